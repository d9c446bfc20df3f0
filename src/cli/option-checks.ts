// Owns the checks of a command line's option values that commander leaves to us, made once for every
// command just before its action runs (program.ts): an option given an empty value (`--tenant "$T"`
// with T unset) is refused, naming the flag, instead of being read as "not given" by a truthiness test
// somewhere (gc swept every tenant; `--config ''` dropped the config file and its `enabled: false`);
// and a mandatory option is checked here, after commander's own checks, so an unknown option
// (`--ag ana`) is reported as unknown rather than as the required one missing.

import { InvalidInputError } from '../model/errors.js';

/** The options whose value is free text: an empty one is a value (an empty label, an empty note). */
const EMPTY_ALLOWED = new Set(['--label', '--note']);

/** What these checks need of a command: its options and where each value came from. */
export interface CheckedCommand {
  readonly options: readonly {
    readonly long?: string | undefined;
    readonly mandatory: boolean;
    readonly flags: string;
    attributeName(): string;
  }[];
  getOptionValue(key: string): unknown;
  getOptionValueSource(key: string): string | undefined;
  /** commander's usage error: prints `message`, then throws (exitOverride). */
  error(message: string, options?: { code?: string; exitCode?: number }): never;
}

/** Options of `cmd` made mandatory by makeOptionMandatory: checked by checkGivenOptions instead. */
export function deferMandatory(cmd: { options: readonly { mandatory: boolean }[] }): void {
  for (const o of cmd.options) {
    if (!o.mandatory) continue;
    o.mandatory = false;
    deferred.add(o);
  }
}
const deferred = new WeakSet<object>();

/**
 * Refuses a mandatory option not given (commander's message and code) and any option given on the
 * command line with an empty value (INVALID_INPUT naming the flag), but the free-text ones.
 */
export function checkGivenOptions(cmd: CheckedCommand): void {
  for (const o of cmd.options) {
    const key = o.attributeName();
    if (deferred.has(o) && cmd.getOptionValue(key) === undefined)
      cmd.error(`error: required option '${o.flags}' not specified`, {
        code: 'commander.missingMandatoryOptionValue',
      });
  }
  for (const o of cmd.options) {
    const key = o.attributeName();
    if (cmd.getOptionValueSource(key) !== 'cli' || !o.long || EMPTY_ALLOWED.has(o.long)) continue;
    const v = cmd.getOptionValue(key);
    if (v === '' || (Array.isArray(v) && v.includes('')))
      throw new InvalidInputError(
        `${o.long} is empty: give it a value or leave the option out (an unset shell variable?)`,
        { details: { option: o.long } },
      );
  }
}
