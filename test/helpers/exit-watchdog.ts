// Test helper: once a test file's last hook has run, the process should end. Armed there, this reports
// what still keeps it alive (connections with their peers, child processes, timers) if it has not ended
// `ms` later, and ends it with status 1: the file fails at once, naming what stayed open, instead of
// reaching the runner's file timeout (ten minutes) with nothing to say. The timer itself never keeps the
// process alive.

type Handle = {
  constructor?: { name?: string };
  remoteAddress?: string;
  remotePort?: number;
  localPort?: number;
  spawnargs?: string[];
  pid?: number;
};

/** What one live handle is, in a line. */
function describe(h: Handle): string {
  const kind = h.constructor?.name ?? 'handle';
  if (h.spawnargs) return `${kind} pid ${h.pid}: ${h.spawnargs.join(' ').slice(0, 200)}`;
  if (h.remotePort !== undefined) return `${kind} ${h.localPort} -> ${h.remoteAddress}:${h.remotePort}`;
  return kind;
}

export function armExitWatchdog(what: string, ms = 30_000): void {
  const timer = setTimeout(() => {
    const handles = (process as unknown as { _getActiveHandles?(): Handle[] })._getActiveHandles?.() ?? [];
    process.stderr.write(
      `${what}: the process did not end ${ms / 1000} s after its last hook; what keeps it alive: ` +
        `${JSON.stringify(process.getActiveResourcesInfo())}\n${handles.map((h) => `  ${describe(h)}`).join('\n')}\n`,
    );
    process.exit(1);
  }, ms);
  timer.unref();
}
