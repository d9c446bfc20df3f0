// Owns turning CLI flags (and the config file they point at) into a configured LocalSnapshotter, and
// running a command body with uniform error handling: typed errors become their exit status, with a
// JSON error object on stdout under --json and a one-line message on stderr always.

import { CONFIG_DEFAULTS, type LoadedConfig, loadConfig, type OnDemandSection } from '../config/config.js';
import { snapshotterOptionsFromConfig } from '../config/runtime.js';
import {
  ConfigError,
  ExitCode,
  InvalidInputError,
  nativeModuleError,
  SnapshotError,
} from '../model/errors.js';
import { LocalSnapshotter } from '../snapshotter/local.js';
import { ProgressReporter } from './progress.js';
import { finishRunTelemetry, runTelemetry, type TelemetryFlags } from './telemetry.js';

export interface StoreFlags extends TelemetryFlags {
  stateRoot?: string;
  memdirRoot?: string;
  sqliteRoot?: string;
  config?: string;
  zstdLevel?: number;
}

/**
 * Commands that write the store: refused when the config says `enabled: false`. `recover` is not one:
 * finishing an interrupted restore makes the agent consistent again and must stay possible.
 */
const WRITING_COMMANDS = new Set([
  'snapshot',
  'restore',
  'import',
  'delete',
  'gc',
  'pin',
  'unpin',
  'prune',
  'migrate',
]);
/** What the program tells us about the command about to run. */
export interface RunningCommand {
  name(): string;
  /** `cli` when the user gave the option, `default` when commander filled it in. */
  getOptionValueSource(key: string): string | undefined;
}
let running: RunningCommand | undefined;
let currentCommand: string | undefined;

/** Set by the program before a command runs (the `enabled` gate and flag-vs-config need it). */
export function setCurrentCommand(cmd: RunningCommand): void {
  running = cmd;
  currentCommand = cmd.name();
}

export interface OutputFlags {
  json?: boolean;
  progress?: boolean;
}

/** The on-demand config sections a command reads; the others are left unresolved (config.ts). */
const SECTIONS_READ: Record<string, OnDemandSection[]> = { serve: ['server'] };

export function loadFlagsConfig(flags: StoreFlags): LoadedConfig | undefined {
  const path = flags.config ?? process.env.NEXO_MEMORY_CONFIG;
  if (!path) return undefined;
  const sections = SECTIONS_READ[currentCommand ?? ''];
  return loadConfig(path, sections ? { sections } : {});
}

/** Flags override the config file, which overrides the defaults (state root `./state`). */
export function snapshotterFrom(flags: StoreFlags): LocalSnapshotter {
  const loaded = loadFlagsConfig(flags);
  const cfg = loaded?.snapshot ?? {};
  if (cfg.enabled === false && currentCommand && WRITING_COMMANDS.has(currentCommand)) {
    throw new ConfigError(
      `memory.snapshot.enabled is false in ${loaded?.path}: \`${currentCommand}\` is disabled on this host`,
    );
  }
  return new LocalSnapshotter({
    ...snapshotterOptionsFromConfig(cfg, flags),
    onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
    observers: runTelemetry(cfg, flags).observers,
  });
}

/** Restore's automatic pre-restore snapshot: the flag (`--no-auto-pre-snapshot`), else auto_pre_restore. */
export function autoPreSnapshotFrom(flags: StoreFlags & { autoPreSnapshot?: boolean }): boolean {
  if (flags.autoPreSnapshot === false || running?.getOptionValueSource('autoPreSnapshot') === 'cli')
    return flags.autoPreSnapshot !== false;
  return loadFlagsConfig(flags)?.snapshot.auto_pre_restore ?? CONFIG_DEFAULTS.auto_pre_restore;
}

/** The identity file: --decrypt-identity, else the config's encryption.identity_path. */
export function identityFrom(flags: StoreFlags & { decryptIdentity?: string }): string | undefined {
  return flags.decryptIdentity ?? loadFlagsConfig(flags)?.snapshot.encryption?.identity_path;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function parseIntFlag(name: string): (v: string) => number {
  return (v: string) => {
    if (!/^-?[0-9]+$/.test(v))
      throw new InvalidInputError(`${name} must be an integer, got ${JSON.stringify(v)}`);
    return Number(v);
  };
}

/** Runs a command body; sets the exit status from its result or its error. */
export async function runCommand(
  flags: OutputFlags & TelemetryFlags,
  body: (progress: ProgressReporter) => Promise<number | undefined>,
): Promise<void> {
  const progress = new ProgressReporter(flags.progress !== false);
  try {
    const code = await body(progress);
    progress.done();
    process.exitCode = code ?? ExitCode.ok;
    await finishRunTelemetry(flags);
  } catch (err) {
    await finishRunTelemetry(flags);
    progress.done();
    process.exitCode = reportError(err, flags.json === true);
  }
}

/**
 * Prints an error as every command does — a JSON error object on stdout under --json, one line on
 * stderr always — and returns its exit status. `alreadyPrinted`: commander wrote the line itself.
 */
export function reportError(err: unknown, json: boolean, alreadyPrinted = false): number {
  const e = err instanceof SnapshotError ? err : nativeModuleError(err);
  const message = e ? e.message : err instanceof Error ? err.message : String(err);
  if (json) {
    printJson({
      error: e ? e.toJSON() : { code: 'INTERNAL', message, exit_code: ExitCode.error, outcome: 'error' },
    });
  }
  if (!alreadyPrinted) process.stderr.write(`error: ${message}\n`);
  if (!e && process.env.NEXO_MEMORY_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
  return e ? e.exitCode : ExitCode.error;
}
