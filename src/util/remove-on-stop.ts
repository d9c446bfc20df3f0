// Owns removing, when a stop signal ends the process, the files an operation writes outside the state
// root (an export's temporary copy in the target directory): nothing else ever looks there for
// leftovers (recover and gc clean only the state root). The library only lists the files (removeOnStop);
// the program decides whether a signal ends the process: a command that ends by SIGINT, SIGTERM or
// SIGHUP arms the removal (armRemoveOnStop), which removes the listed files and then lets the signal
// end the process as it would have (same exit status). A daemon that finishes its operation on a
// signal (`serve`, `mcp`) never arms it. SIGKILL leaves the files: their names say what they are.

import { rmSync } from 'node:fs';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const listed = new Set<string>();
let armed = false;

/**
 * Lists `paths` (absolute; missing ones are fine) for removal should a stop signal end the process while
 * they are written; returns the function that takes them off the list (once published or removed).
 */
export function removeOnStop(paths: readonly string[]): () => void {
  for (const p of paths) listed.add(p);
  return () => {
    for (const p of paths) listed.delete(p);
  };
}

function onSignal(signal: NodeJS.Signals): void {
  for (const p of listed) {
    try {
      rmSync(p, { force: true });
    } catch {
      // (a file that cannot be removed stays: its name says it is a temporary)
    }
  }
  listed.clear();
  // the signal's own default: with no listener left, Node restores it, and the process ends by the
  // signal as it would have without this handler
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  process.kill(process.pid, signal);
}

/**
 * From now on, SIGINT, SIGTERM and SIGHUP remove the listed files, then end the process as they would;
 * until the function returned is called (the command is over: the signals are as they were).
 */
export function armRemoveOnStop(): () => void {
  if (armed) return () => {};
  armed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
  return () => {
    armed = false;
    for (const s of SIGNALS) process.removeListener(s, onSignal);
  };
}
