// Owns test-only fault points. Tests set NEXO_MEMORY_FAULTS="point[=action],…" (action: an errno such
// as ENOSPC or EIO, or `kill` for SIGKILL of this process) to make a named step fail for real. Unset in
// production: each check is one environment lookup.

const cache = { raw: undefined as string | undefined, map: new Map<string, string>() };

function faults(): Map<string, string> {
  const raw = process.env.NEXO_MEMORY_FAULTS;
  if (raw !== cache.raw) {
    cache.raw = raw;
    cache.map = new Map(
      (raw ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .map((s) => {
          const [point, action] = s.split('=');
          return [point!, action ?? 'EIO'] as [string, string];
        }),
    );
  }
  return cache.map;
}

/** Throws (or kills the process) when the fault point `point` is armed. */
export function faultPoint(point: string): void {
  const action = faults().get(point);
  if (action === undefined) return;
  if (action === 'kill') process.kill(process.pid, 'SIGKILL');
  const err = new Error(`${action}: injected fault at ${point}`) as NodeJS.ErrnoException;
  err.code = action;
  throw err;
}
