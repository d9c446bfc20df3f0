// Owns SIGTERM, SIGINT and SIGHUP for `nexo-memory mcp` and `serve`, from the program's first line: bin/nexo-memory.js
// imports this module before any other, so a signal that comes while the command's modules load, its
// config is read or its server connects is caught and kept for the command (`onStopSignal`), instead
// of Node's default, which ends the process by the signal (a supervisor saw that in the first ~300 ms,
// a clean exit 0 later). A signal before this line, while Node itself starts, still ends the process by
// the signal; nothing of ours has run then. `serve` too: a signal before it listens ends it with status 0
// before it serves. Every other command keeps the default: a `snapshot` or `restore` is ended by the
// signal as before (each leaves only what the next operation cleans up). Once caught, the programs the
// process starts run in a process group of their own (util/child-group.ts): a signal to the whole group
// (Ctrl-C, systemd) reaches only this process, whose handler decides.

import { startChildrenApart } from '../util/child-group.js';

const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
/** The commands whose first line catches the stop signals. */
const COMMANDS_THAT_STOP = new Set(['mcp', 'serve']);

const caught: NodeJS.Signals[] = [];
let listener: ((signal: NodeJS.Signals) => void) | undefined;
let installed = false;

function onSignal(signal: NodeJS.Signals): void {
  if (listener) listener(signal);
  else caught.push(signal);
}

/** The command named by the arguments after `node` and the script (the program takes no option values). */
const commandOf = (args: readonly string[]): string | undefined => args.find((a) => !a.startsWith('-'));

/** Catches the stop signals from now on when the arguments name a command that stops on them. */
export function holdStopSignals(args: readonly string[]): void {
  if (installed || !COMMANDS_THAT_STOP.has(commandOf(args) ?? '')) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
  startChildrenApart();
}

/**
 * Hands every stop signal, those caught before and those to come, to `fn`. Outside the installed
 * program (a test calling `main`), installs the handlers itself.
 */
export function onStopSignal(fn: (signal: NodeJS.Signals) => void): void {
  if (!installed) {
    installed = true;
    for (const s of SIGNALS) process.on(s, onSignal);
    startChildrenApart();
  }
  listener = fn;
  for (const s of caught.splice(0)) fn(s);
}

holdStopSignals(process.argv.slice(2));

/**
 * Resolves once a signal that came during a synchronous step (a config file's read) has reached its
 * listener: it is delivered only when the event loop next polls, so two turns of the loop (the first may
 * end before that iteration's poll).
 */
export function stopSignalsDelivered(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}
