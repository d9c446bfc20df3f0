// Owns repository locks (docs/locking.md, "Repository locks" and "… across hosts"): lock objects in the
// backend, shared for operations that add or read data (snapshot, import, restore, verify, check) and
// exclusive for prune. A held lock blocks a newcomer; two lockers that raced both see each other after
// writing and withdraw. Locks are refreshed while held. A lock not refreshed for STALE_MS (by the
// reader's clock) is stale, and so is one of a process of this very host that is gone (no such pid, a
// zombie, or a pid reused by a process that started later) — "this host" is the boot and pid namespace
// (`host_id`), not the host name, which other machines and containers may share; stale locks are
// ignored, and removed by the next exclusive locker. A holder counts on its lock only for TRUST_MS after
// the start of its last successful write (a save that took too long, or a refresh that came too late, is
// not trusted: the lock is withdrawn or lost), so clocks may differ by up to STALE_MS − TRUST_MS between
// hosts. The times a lock records, and staleness, are the wall clock's (other hosts read them); this
// process's own durations — its wait for a lock, the age of its last write — are the monotonic clock's,
// which a wall clock stepped back or forward does not move. A holder checks that its lock is still its
// own (`check`) before a step that others rely on it for: a lock removed by another process, or not
// refreshed in time, is lost, and the operation stops.

import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Backend } from '../backend/backend.js';
import {
  ObjectExistsError,
  ObjectNotFoundError,
  ObjectTooLargeError,
  RepositoryLockedError,
} from '../model/errors.js';
import { readObject } from './repository.js';

export const STALE_MS = 30 * 60 * 1000;
export const REFRESH_MS = 5 * 60 * 1000;
/**
 * A holder whose last write of its lock started longer ago than this no longer counts on it (others may
 * soon judge it stale): the margin STALE_MS − TRUST_MS covers clock differences between hosts.
 */
export const TRUST_MS = STALE_MS - REFRESH_MS;

export interface LockInfo {
  exclusive: boolean;
  operation: string;
  host: string;
  /**
   * This boot of this machine and the process's pid namespace (Linux: boot_id and /proc/self/ns/pid):
   * a pid means something only where both are the same. Absent where there is no /proc.
   */
  host_id?: string;
  pid: number;
  /** When the process started (Linux: clock ticks after boot, /proc/<pid>/stat field 22), to tell a reused pid. */
  start?: string;
  created_at_ms: number;
  refreshed_at_ms: number;
  /**
   * An agent's lock (stop 47): `agent:<tenant>/<agent id>`. It serializes the operations that change
   * which of the agent's snapshots exist or are pinned (delete, pin, retention's forget) across hosts,
   * and conflicts only with locks of the same scope: snapshots and prune neither wait for it nor block
   * it. Written with `exclusive: false`, so a version without scopes reads it as a shared lock.
   */
  scope?: string;
}

/** The scope of an agent's repository lock (LockInfo.scope). */
export const agentScope = (tenant: string, agentId: string): string => `agent:${tenant}/${agentId}`;

/** A stale lock of another process that an exclusive locker removed (prune reports them; stop 47). */
export interface RemovedStaleLock {
  /** The object removed: `locks/<name>`. */
  lock: string;
  host: string;
  pid: number;
  operation: string;
  exclusive: boolean;
  /** When it was last refreshed (its writer's clock), and how long before the removal (the remover's). */
  refreshed_at_ms: number;
  age_ms: number;
}

export interface HeldRepoLock {
  readonly name: string;
  /** The stale locks removed when this (exclusive) lock was taken; empty for a shared lock. */
  readonly staleRemoved?: readonly RemovedStaleLock[];
  /** Writes the lock again now (it is also refreshed every REFRESH_MS); a lock no longer trusted is lost. */
  refresh(): Promise<void>;
  /** Throws RepositoryLockedError when the lock was lost (removed by another process, or not refreshed in time). */
  check(): Promise<void>;
  release(): Promise<void>;
}

/** The state letter and start time of a process of this host from /proc, or undefined when there is no /proc. */
function procStat(pid: number): { state: string; start: string } | undefined | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ESRCH' ? null : undefined;
  }
  // `pid (comm) state …`: comm may hold spaces and parentheses; the fields follow the last `)`.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', start: fields[19] ?? '' };
}

/** This process's start time, recorded in its locks. */
const ownStart = (): string | undefined => procStat(process.pid)?.start;

let hostIdCache: string | null | undefined;
/** This boot of this machine and this pid namespace, or undefined without /proc. */
export function ownHostId(): string | undefined {
  if (hostIdCache === undefined) {
    try {
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      const ns = readlinkSync('/proc/self/ns/pid');
      hostIdCache = `${boot}/${ns}`;
    } catch {
      hostIdCache = null;
    }
  }
  return hostIdCache ?? undefined;
}

/**
 * Whether the lock's pid names a process this process can see: written on this host in this boot and
 * pid namespace. A lock without `host_id` (written before it existed) goes by its host name.
 */
function sameProcessSpace(l: LockInfo): boolean {
  if (l.host !== hostname()) return false;
  return l.host_id === undefined || l.host_id === ownHostId();
}

function alive(pid: number, start: string | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const st = procStat(pid);
  if (st === null) return false; // gone between the two looks
  if (st === undefined) return true; // no /proc: the signal is all we know
  if (st.state === 'Z' || st.state === 'X') return false; // exited, not reaped yet
  return start === undefined || st.start === start;
}

/**
 * The names of the locks this process holds or is taking, kept on `globalThis` (one set for every copy
 * of this module a process may load). A lock of this very process (its pid and start) that is not
 * among them was left by one of its operations whose removal failed (a store error after the retries):
 * it is stale at once, as a dead process's lock is, instead of blocking this process's own prune (a
 * daemon's retention) for 30 minutes (stop 62 review). Added before a lock is written, so a lock being
 * taken is never taken for a leftover by another operation of the process.
 */
const OWN_LOCKS = Symbol.for('nexo-memory-snapshot.repository-locks');
const registry = globalThis as Record<symbol, Set<string> | undefined>;
registry[OWN_LOCKS] ??= new Set<string>();
const ownLocks: Set<string> = registry[OWN_LOCKS];

/**
 * Whether a lock no longer counts: not refreshed for STALE_MS, or of a process of this host that is gone
 * (its pid dead or reused), or, `name` given, of this process but held by none of its operations.
 */
export function isStale(l: LockInfo, now = Date.now(), name?: string): boolean {
  if (now - l.refreshed_at_ms > STALE_MS) return true;
  if (!sameProcessSpace(l)) return false;
  if (l.pid !== process.pid) return !alive(l.pid, l.start);
  if (l.start !== undefined && l.start !== ownStart()) return true; // a process before us with our pid
  return name !== undefined && !ownLocks.has(name);
}

async function readLocks(backend: Backend): Promise<Map<string, LockInfo>> {
  const out = new Map<string, LockInfo>();
  for await (const o of backend.list('locks')) {
    try {
      const l = JSON.parse(
        (await readObject(backend, 'locks', o.name, 64 * 1024)).toString('utf8'),
      ) as LockInfo;
      if (typeof l?.created_at_ms === 'number' && typeof l.refreshed_at_ms === 'number') out.set(o.name, l);
    } catch (err) {
      // gone, not JSON, or larger than any lock written (a foreign object: it made every operation
      // fail as damage, stop 62 review): not a lock
      if (
        !(
          err instanceof ObjectNotFoundError ||
          err instanceof SyntaxError ||
          err instanceof ObjectTooLargeError
        )
      )
        throw err;
    }
  }
  return out;
}

/** How a lock is named in messages: `shared lock of snapshot (pid 4242 on vm)`. */
export function describeLock(l: LockInfo): string {
  if (typeof l.scope === 'string') return `${l.scope} lock of ${l.operation} (pid ${l.pid} on ${l.host})`;
  return `${l.exclusive ? 'exclusive' : 'shared'} lock of ${l.operation} (pid ${l.pid} on ${l.host})`;
}

/** A lock's time for a message: ISO 8601, or the number as written when no date can show it. */
const when = (ms: number): string => {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
};

/**
 * How a lock that blocks a locker is named in its REPOSITORY_LOCKED error (stop 45): the object to
 * remove (`locks/<name>` in the store), and what it claims — operation, host, pid, written and refreshed
 * — with how long it stays when it is dated in the future (it is stale only STALE_MS after that date).
 * The host and operation are the lock's own bytes (anyone who can write the store chose them): their
 * control characters are escaped, as JSON writes them.
 */
export function describeBlocker(backend: Backend, name: string, l: LockInfo, now: number): string {
  const shown = (v: unknown) => JSON.stringify(String(v)).slice(1, -1);
  const kind = typeof l.scope === 'string' ? shown(l.scope) : l.exclusive ? 'exclusive' : 'shared';
  const claims =
    `${kind} lock of ${shown(l.operation)} (pid ${shown(l.pid)} on ${shown(l.host)}, ` +
    `written ${when(l.created_at_ms)}, refreshed ${when(l.refreshed_at_ms)})`;
  // When it stops blocking (stop 47): a lock of another host only by age, STALE_MS after its last
  // refresh (by this host's clock; its holder's refreshes move that on). One of this host goes with
  // its process, and is not dated here.
  const future =
    l.refreshed_at_ms > now
      ? `; it is dated ${Math.round((l.refreshed_at_ms - now) / 60_000)} min in the future and stays until ` +
        `${when(l.refreshed_at_ms + STALE_MS)} unless removed`
      : sameProcessSpace(l)
        ? ''
        : `; stale after ${when(l.refreshed_at_ms + STALE_MS)} (in ${Math.max(0, Math.ceil((l.refreshed_at_ms + STALE_MS - now) / 60_000))} minutes) unless refreshed`;
  return `${claims}: object locks/${name} in ${backend.location}${future} (remove it only when that process is not running)`;
}

/**
 * The locks other than `self` that are held now (not stale), described: what a reader under a shared
 * lock (prune's dry run) may be running beside. An agent's lock (scoped) is not among them: it writes
 * no data (its holder takes the shared lock too when it does).
 */
export async function otherLiveLocks(backend: Backend, self?: string): Promise<string[]> {
  const now = Date.now();
  return [...(await readLocks(backend))]
    .filter(([name, l]) => name !== self && l.scope === undefined && !isStale(l, now, name))
    .map(([, l]) => describeLock(l));
}

/**
 * The first non-stale lock in `all` (other than `self`) that conflicts with a lock of this kind: for a
 * scoped lock (an agent's), any lock of the same scope; otherwise the repository's locks by kind, the
 * scoped ones left out.
 */
function conflicting(
  all: Map<string, LockInfo>,
  exclusive: boolean,
  now: number,
  self?: string,
  scope?: string,
): [string, LockInfo] | undefined {
  for (const entry of all) {
    const [name, l] = entry;
    if (name === self || isStale(l, now, name)) continue;
    if (scope !== undefined || l.scope !== undefined) {
      if (l.scope === scope) return entry;
      continue;
    }
    if (exclusive || l.exclusive) return entry;
  }
  return undefined;
}

/**
 * Takes a repository lock, retrying with jittered backoff for up to `timeoutMs` while a conflicting
 * lock is held (0: one attempt, never waits); RepositoryLockedError (naming the holder) when it stays
 * busy. restic's protocol: look first (a held lock blocks), write our lock, look again — a conflicting
 * lock written meanwhile means two lockers raced, and ours is withdrawn before retrying (the other may
 * withdraw too; the backoff's jitter separates the next attempts).
 */
export async function lockRepository(
  backend: Backend,
  exclusive: boolean,
  operation: string,
  timeoutMs: number,
  opts: LockOptions = {},
): Promise<HeldRepoLock> {
  const now = opts.now ?? Date.now;
  const elapsed = opts.monotonic ?? (() => performance.now());
  const began = elapsed();
  const deadline = began + timeoutMs;
  /** How long it waited, for the error (undefined when it was not to wait). */
  const waited = () => (timeoutMs > 0 ? elapsed() - began : undefined);
  const start = ownStart();
  const hostId = ownHostId();
  let delay = 50;
  for (;;) {
    const scope = opts.scope;
    let blocker = conflicting(await readLocks(backend), exclusive, now(), undefined, scope);
    let why: string | undefined;
    if (!blocker) {
      const name = randomBytes(32).toString('hex');
      ownLocks.add(name); // before it is written: never a leftover to another operation of this process
      const t0 = now();
      const m0 = elapsed();
      const mine: LockInfo = {
        exclusive,
        operation,
        host: hostname(),
        ...(hostId !== undefined ? { host_id: hostId } : {}),
        pid: process.pid,
        ...(start !== undefined ? { start } : {}),
        created_at_ms: t0,
        refreshed_at_ms: t0,
        ...(scope !== undefined ? { scope } : {}),
      };
      try {
        await backend.save({ type: 'locks', name }, Buffer.from(JSON.stringify(mine)), { ifAbsent: true });
      } catch (err) {
        // A shared lock on a repository on a read-only file system (a backup mounted read-only for a
        // disaster recovery): nothing can write, delete or prune there, so a reader needs no lock; the
        // caller is told (opts.onUnheld) and reads without one (stop 46).
        if (!exclusive && (err as { errno?: unknown }).errno === 'EROFS' && opts.onUnheld) {
          ownLocks.delete(name);
          opts.onUnheld(err as Error);
          return unheld(name);
        }
        // A remote store that took the lock but lost its answer, retried: the random name is ours.
        if (!(err instanceof ObjectExistsError)) {
          // A save that failed may still have landed (its answer lost, every attempt): the lock would
          // block others, and this very process, until stale (stop 55). The random name is ours.
          ownLocks.delete(name);
          await backend.remove({ type: 'locks', name }).catch(() => {});
          throw err;
        }
      }
      const all = await readLocks(backend);
      blocker = conflicting(all, exclusive, now(), name, scope);
      if (!blocker && elapsed() - m0 <= TRUST_MS) {
        const removed: RemovedStaleLock[] = [];
        if (exclusive)
          for (const [other, l] of all) {
            const at = now();
            if (other === name || !isStale(l, at, other)) continue;
            await backend.remove({ type: 'locks', name: other });
            removed.push({
              lock: `locks/${other}`,
              host: String(l.host),
              pid: l.pid,
              operation: String(l.operation),
              exclusive: l.exclusive === true,
              refreshed_at_ms: l.refreshed_at_ms,
              age_ms: at - l.refreshed_at_ms,
            });
          }
        return { ...held(backend, name, mine, now, elapsed, m0), staleRemoved: removed };
      }
      // Raced with another locker, or writing the lock took so long that others may already judge it
      // stale: it is withdrawn, not counted on.
      if (!blocker) why = `writing the lock took ${Math.round((elapsed() - m0) / 1000)} s; it is not trusted`;
      ownLocks.delete(name);
      await backend.remove({ type: 'locks', name });
    }
    if (elapsed() >= deadline) {
      if (blocker) {
        const [name, l] = blocker;
        throw new RepositoryLockedError(
          describeBlocker(backend, name, l, now()),
          {
            lock: `locks/${name}`,
            location: backend.location,
            host: l.host,
            pid: l.pid,
            created_at_ms: l.created_at_ms,
            refreshed_at_ms: l.refreshed_at_ms,
            stale_after_ms: l.refreshed_at_ms + STALE_MS,
          },
          waited(),
        );
      }
      throw new RepositoryLockedError(`no lock could be taken in time: ${why}`, undefined, waited());
    }
    // never past the deadline: the wait an error reports is the timeout, not up to 1.5 s more
    const pause = Math.min(delay * (0.5 + Math.random()), Math.max(0, deadline - elapsed()));
    await new Promise((r) => setTimeout(r, pause));
    delay = Math.min(delay * 2, 1000);
  }
}

export interface LockOptions {
  /**
   * The wall clock (tests); default Date.now: what a lock records and what staleness is judged by, as
   * other processes and hosts compare those times with theirs.
   */
  now?: () => number;
  /**
   * An agent's lock (agentScope; `exclusive` must be false): excludes only the locks of the same scope
   * (LockInfo.scope).
   */
  scope?: string;
  /**
   * The monotonic clock (tests); default performance.now: how long this process waits for the lock
   * (`timeoutMs`) and how long ago it last wrote its own lock (TRUST_MS), durations a wall clock
   * stepped back or forward would stretch or cut (stop 47).
   */
  monotonic?: () => number;
  /**
   * For a shared lock: called when the repository's file system is read-only (EROFS), and the lock is
   * then not taken (an unheld one is returned). Without it, that failure is the lock's error.
   */
  onUnheld?: (err: Error) => void;
}

/** A shared lock not taken (the repository is read-only): nothing to refresh, check or remove. */
function unheld(name: string): HeldRepoLock {
  const none = async (): Promise<void> => {};
  return { name, refresh: none, check: none, release: none };
}

function held(
  backend: Backend,
  name: string,
  info: LockInfo,
  now: () => number,
  elapsed: () => number,
  writtenAt: number,
): HeldRepoLock {
  let released = false;
  /** Why the lock was lost (its message's reason), once it was. */
  let lost: string | undefined;
  /** When the last successful write of the lock started, on the monotonic clock. */
  let refreshedAt = writtenAt;
  const exists = async (): Promise<boolean> => {
    try {
      await backend.stat({ type: 'locks', name });
      return true;
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return false;
      throw err;
    }
  };
  const gone = `its object locks/${name} is no longer in ${backend.location} (another process removed it, judging it stale)`;
  /** Whether the last write of the lock started too long ago to count on (and then why). */
  const untrusted = (): string | undefined => {
    const age = elapsed() - refreshedAt;
    return age > TRUST_MS
      ? `its last write started ${Math.round(age / 1000)} s ago, more than the ${TRUST_MS / 60_000} min it is counted on`
      : undefined;
  };
  const refresh = async () => {
    // A lock no longer trusted (its last write started too long ago) may have been judged stale and
    // removed by another host: writing it again would bring it back behind that host's back. It is lost.
    lost ??= untrusted();
    // A lock another process removed (it judged it stale) is not written again: it is lost.
    if (lost === undefined && !(await exists())) lost = gone;
    if (lost !== undefined) return;
    const m = elapsed();
    await backend.save(
      { type: 'locks', name },
      Buffer.from(JSON.stringify({ ...info, refreshed_at_ms: now() })),
    );
    // A refresh that completed only after the old write stopped being trusted may have revived a lock
    // another host had removed meanwhile: not counted on either.
    lost = untrusted();
    if (lost !== undefined) return;
    refreshedAt = m;
  };
  let refreshing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    refreshing = refreshing.then(refresh).catch(() => {}); // a failed refresh shows in check()
  }, REFRESH_MS);
  timer.unref();
  const what = `${info.scope ?? (info.exclusive ? 'exclusive' : 'shared')} lock of ${info.operation}`;
  return {
    name,
    refresh() {
      refreshing = refreshing.then(refresh);
      const done = refreshing;
      refreshing = refreshing.catch(() => {});
      return done;
    },
    async check() {
      lost ??= untrusted();
      if (lost === undefined && !(await exists())) lost = gone;
      if (lost !== undefined)
        throw new RepositoryLockedError(`this operation's ${what} was lost: ${lost}; it stops here`);
    },
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await refreshing;
      ownLocks.delete(name); // a removal that fails leaves a lock this process no longer holds: stale here
      await backend.remove({ type: 'locks', name });
    },
  };
}
