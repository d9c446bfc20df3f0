// Test helper: once a test file's last hook has run, the process should end. Armed there, this reports
// what still keeps it alive (connections with their peers, child processes, timers) if it has not ended
// `ms` later, and ends it with status 1: the file fails at once, naming what stayed open, instead of
// reaching the runner's file timeout (ten minutes) with nothing to say. The timer itself never keeps the
// process alive. Importing it records where each timer of this process is set (the global setTimeout and
// setInterval), so a timer that keeps the process alive is named by the code that set it.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** Timers set through the globals (the NATS client's, the tests'), with where they were set. */
const timers = new Map<NodeJS.Timeout, string>();
type Timer = NodeJS.Timeout & { _destroyed?: boolean };

/** Wraps a global timer setter so each timer it sets is recorded with its caller's stack. */
function recording<F extends (...a: never[]) => NodeJS.Timeout>(set: F): F {
  const wrapped = function (this: unknown, ...args: Parameters<F>) {
    const t = set.apply(this, args);
    if (timers.size > 20_000) for (const k of timers.keys()) if ((k as Timer)._destroyed) timers.delete(k);
    timers.set(t, new Error().stack?.split('\n').slice(2, 9).join('\n') ?? '');
    return t;
  } as unknown as F;
  return Object.assign(wrapped, set);
}
globalThis.setTimeout = recording(globalThis.setTimeout);
globalThis.setInterval = recording(globalThis.setInterval);

/** The recorded timers still pending that keep the process alive, each with where it was set. */
function timersHolding(): string[] {
  return [...timers]
    .filter(([t]) => !(t as Timer)._destroyed && t.hasRef())
    .map(([, where]) => `  Timeout set at\n${where.replace(/^\s*/gm, '      ')}`);
}

type Handle = {
  constructor?: { name?: string };
  remoteAddress?: string;
  remotePort?: number;
  localPort?: number;
  spawnargs?: string[];
  pid?: number;
  _handle?: { fd?: number };
};

/**
 * For a pipe or socket pair this process still reads (a child's stdout or stderr whose child has exited):
 * which processes hold its other end open (a grandchild that inherited it keeps it open, and this
 * process alive). Seen once in CI (stop 59): two such ends kept a test file alive, and nothing said whose.
 * A pipe's two ends share an inode (found in /proc/PID/fd); a socket pair's do not (found with `ss`).
 */
function otherEnd(fd: number): string {
  let target: string;
  try {
    target = readlinkSync(`/proc/${process.pid}/fd/${fd}`);
  } catch (err) {
    return `fd ${fd}: ${(err as Error).message}`;
  }
  const ino = /^(pipe|socket):\[(\d+)\]$/.exec(target);
  if (!ino) return target;
  const holders: string[] = [];
  try {
    if (ino[1] === 'pipe') {
      for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid)) {
        const fds = (() => {
          try {
            return readdirSync(`/proc/${pid}/fd`);
          } catch {
            return []; // gone, or not ours to read
          }
        })();
        if (fds.some((f) => readlinkOr(`/proc/${pid}/fd/${f}`) === target))
          holders.push(
            `pid ${pid} (${readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 160)})`,
          );
      }
    } else {
      // `ss -xpn`: a line per end, `… * <its inode> * <its peer's inode> users:((…))`
      for (const line of execFileSync('ss', ['-xpn'], { encoding: 'utf8', timeout: 5000 }).split('\n')) {
        const f = line.trim().split(/\s+/);
        if (f[7] === ino[2]) holders.push(f.slice(8).join(' ') || `inode ${f[5]}, no process named`);
      }
    }
  } catch (err) {
    return `${target}: ${(err as Error).message}`;
  }
  return `${target}, other end held by ${holders.length > 0 ? holders.join('; ') : 'no process found'}`;
}

function readlinkOr(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

/** What one live handle is, in a line. */
function describe(h: Handle): string {
  const kind = h.constructor?.name ?? 'handle';
  if (h.spawnargs) return `${kind} pid ${h.pid}: ${h.spawnargs.join(' ').slice(0, 200)}`;
  if (h.remotePort !== undefined) return `${kind} ${h.localPort} -> ${h.remoteAddress}:${h.remotePort}`;
  const fd = h._handle?.fd;
  if (typeof fd === 'number' && fd >= 0) return `${kind} fd ${fd}: ${otherEnd(fd)}`;
  return kind;
}

export function armExitWatchdog(what: string, ms = 30_000): void {
  const timer = setTimeout(() => {
    const handles = (process as unknown as { _getActiveHandles?(): Handle[] })._getActiveHandles?.() ?? [];
    process.stderr.write(
      `${what}: the process did not end ${ms / 1000} s after its last hook; what keeps it alive: ` +
        `${JSON.stringify(process.getActiveResourcesInfo())}\n${[...handles.map((h) => `  ${describe(h)}`), ...timersHolding()].join('\n')}\n`,
    );
    process.exit(1);
  }, ms);
  timer.unref();
}
