// Owns whether the programs this process starts directly (git, util/program-host.ts's host aside) run in
// a process group of their own. A process that handles its stop signals itself (`serve`, `mcp`: the
// operation in progress finishes) must not lose its git to a signal sent to its whole process group
// (Ctrl-C in a terminal, `kill -- -PGID`), so its children are started apart from that group. Every
// other command ends by the signal, and its git with it, in its group as before: a git started apart
// would outlive it.

let apart = false;

/** From now on, programs this process starts run in a process group of their own. */
export function startChildrenApart(): void {
  apart = true;
}

/** Whether programs this process starts run in a process group of their own (spawn's `detached`). */
export function childrenApart(): boolean {
  return apart;
}
