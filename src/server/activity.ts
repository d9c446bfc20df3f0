// Owns the daemon's board of operations in progress (snapshots, restores, gc sweeps the daemon runs:
// API calls, scheduled runs, retention sweeps) with their progress, the last ones that ended with their
// result (20 of each tenant: a tenant's reader sees its last 20), and the live feed of both as
// server-sent events (`GET /v1/events`). While a feed is open it also watches the operations of other
// processes (a CLI snapshot: an agent lock another process holds), from their start to their end,
// without progress. Verify reports the daemon produced are
// remembered per snapshot (the fleet's "last verify", and its damaged snapshots: one stays damaged
// until a verify of that very snapshot passes or it is gone). Memory only: a restart forgets.

import { randomUUID } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import type { ProgressListener, SnapshotMeta } from '../model/types.js';
import { ClientErrors } from './client-errors.js';

/** The daemon's own: snapshot, restore, gc; another process's: what it recorded (`snapshot`, `delete`, …). */
export type ActivityOp = string;

/** An operation another process runs now (the agent lock it holds). */
export interface OtherOperation {
  agent_id: string;
  tenant: string;
  operation: string;
  pid: number;
  host: string;
  since_ms: number;
}

export interface Activity {
  id: string;
  op: ActivityOp;
  /** Who started it: an API call, the scheduler, the retention worker. */
  source: 'api' | 'scheduled' | 'retention' | 'other-process';
  /** Of another process's operation. */
  pid?: number;
  host?: string;
  agent_id?: string;
  tenant?: string;
  dry_run?: boolean;
  started_at_ms: number;
  phase?: string;
  bytes?: number;
  total?: number;
}

export interface EndedActivity extends Activity {
  ended_at_ms: number;
  /** `unknown`: another process's operation ended, and what it did is not known here. */
  outcome: 'ok' | 'failed' | 'unknown';
  /** A short summary of the result (ids, counts), never memory content. */
  result?: Record<string, unknown>;
  /** The client's form of the failure (client-errors.ts): no host path; the log has it under error_id. */
  error?: { code: string; message: string; error_id: string };
}

export type ActivityEvent =
  | { type: 'started' | 'progress'; activity: Activity }
  | { type: 'ended'; activity: EndedActivity };

/** The ended operations a reader is shown: the last 20 of all, or of the tenant the reader names. */
const RECENT = 20;
/**
 * The ended operations the board keeps: the last RECENT of each tenant (and of no tenant: a gc of
 * every tenant), at most this many in all, so a reader of one tenant sees its last RECENT however many
 * operations other tenants ran since (bounded: a few hundred bytes each).
 */
const KEPT = RECENT * 50;

/**
 * Whether an operation is shown to a reader of `tenant` (undefined: every reader sees all). An operation
 * without a tenant (a gc of every tenant) is no one tenant's: its result counts every tenant's agents.
 */
const ofTenant = (a: Activity, tenant: string | undefined): boolean =>
  tenant === undefined || a.tenant === tenant;
/** Progress events of one operation are sent at most this often. */
const PROGRESS_EVERY_MS = 200;
/** A comment line keeps idle connections (and proxies) from timing out. */
const KEEPALIVE_MS = 15_000;

/**
 * The board's summary of a snapshot taken (by the API or the scheduler): its id, label and sizes
 * (`added_bytes` as list gives it).
 */
export const summarizeSnapshot = (m: SnapshotMeta): Record<string, unknown> => ({
  snapshot_id: m.id,
  label: m.label,
  bundle_size_bytes: m.bundle_size_bytes,
  ...(m.added_bytes !== undefined ? { added_bytes: m.added_bytes } : {}),
});

export interface VerifyRecord {
  snapshot_id: string;
  status: string;
  deep: boolean;
  at_ms: number;
}

export class ActivityBoard {
  private readonly active = new Map<string, Activity>();
  private readonly ended: EndedActivity[] = [];
  private readonly listeners = new Set<(e: ActivityEvent) => void>();
  private readonly streams = new Set<PassThrough>();
  /** Per agent (`tenant/agent`): the newest verify report of each of its snapshots. */
  private readonly verifies = new Map<string, Map<string, VerifyRecord>>();
  private closed = false;
  private readonly others = new Map<string, Activity>();
  private watcher: NodeJS.Timeout | undefined;

  /** `errors`: what the feed's readers are told of a failure (and the log line under its id). */
  constructor(private readonly errors: ClientErrors = new ClientErrors()) {}

  /** What runs now; with `tenant`, only the operations of that tenant (not a gc of every tenant). */
  running(tenant?: string): Activity[] {
    return [...this.active.values()].filter((a) => ofTenant(a, tenant)).map((a) => ({ ...a }));
  }

  /**
   * The last operations that ended, newest first: at most 20; with `tenant`, the last 20 of that tenant
   * (filtered first, then limited: another tenant's newer operations never push its own out).
   */
  recent(tenant?: string): EndedActivity[] {
    return this.ended.filter((a) => ofTenant(a, tenant)).slice(0, RECENT);
  }

  /** Runs `op` as a board entry: started, its progress, and its end (summarised by `summarize`). */
  async track<T>(
    what: Omit<Activity, 'id' | 'started_at_ms'>,
    op: (onProgress: ProgressListener) => Promise<T>,
    summarize: (result: T) => Record<string, unknown>,
  ): Promise<T> {
    const a: Activity = { ...what, id: randomUUID(), started_at_ms: Date.now() };
    this.active.set(a.id, a);
    this.emit({ type: 'started', activity: { ...a } });
    let last = 0;
    const onProgress: ProgressListener = (p) => {
      a.phase = p.phase;
      a.bytes = p.bytes;
      if (p.total !== undefined) a.total = p.total;
      else delete a.total;
      const now = Date.now();
      if (now - last < PROGRESS_EVERY_MS) return;
      last = now;
      this.emit({ type: 'progress', activity: { ...a } });
    };
    try {
      const result = await op(onProgress);
      this.finish(a, { outcome: 'ok', result: summarize(result) });
      return result;
    } catch (err) {
      const told = this.errors.report(
        err,
        `${what.op}${what.agent_id ? ` of ${what.tenant}/${what.agent_id}` : ''} (${what.source})`,
      );
      this.finish(a, {
        outcome: 'failed',
        error: { code: told.code, message: told.message, error_id: told.error_id },
      });
      throw err;
    }
  }

  private finish(a: Activity, end: Pick<EndedActivity, 'outcome' | 'result' | 'error'>): void {
    this.active.delete(a.id);
    const done: EndedActivity = { ...a, ...end, ended_at_ms: Date.now() };
    this.ended.unshift(done);
    this.trimEnded();
    this.emit({ type: 'ended', activity: done });
  }

  /** Keeps the last RECENT ended operations of each tenant (and of none), at most KEPT in all. */
  private trimEnded(): void {
    const per = new Map<string, number>();
    let kept = 0;
    for (let i = 0; i < this.ended.length; i++) {
      const key = this.ended[i]!.tenant ?? '';
      const n = per.get(key) ?? 0;
      if (n < RECENT && kept < KEPT) {
        per.set(key, n + 1);
        this.ended[kept++] = this.ended[i]!;
      }
    }
    this.ended.length = kept;
  }

  /**
   * Every `everyMs` while a feed is open: `poll` says what other processes run now; a new one is
   * started, one no longer there is ended with the result `ended` finds (undefined: outcome unknown).
   */
  watchOthers(
    poll: () => Promise<OtherOperation[]>,
    ended: (a: Activity) => Promise<Record<string, unknown> | undefined>,
    everyMs = 1000,
  ): void {
    let busy = false;
    const tick = async () => {
      if (busy || this.closed || this.listeners.size === 0) return;
      busy = true;
      try {
        const seen = new Set<string>();
        for (const o of await poll()) {
          const key = `other:${o.tenant}/${o.agent_id}/${o.host}/${o.pid}/${o.since_ms}`;
          seen.add(key);
          if (this.others.has(key)) continue;
          const a: Activity = {
            id: key,
            op: o.operation,
            source: 'other-process',
            agent_id: o.agent_id,
            tenant: o.tenant,
            pid: o.pid,
            host: o.host,
            started_at_ms: o.since_ms,
          };
          this.others.set(key, a);
          this.active.set(key, a);
          this.emit({ type: 'started', activity: { ...a } });
        }
        for (const [key, a] of [...this.others]) {
          if (seen.has(key)) continue;
          this.others.delete(key);
          const result = await ended(a).catch(() => undefined);
          this.finish(a, result ? { outcome: 'ok', result } : { outcome: 'unknown' });
        }
      } catch {
        // the next tick tries again (a store being created, an agent removed meanwhile)
      } finally {
        busy = false;
      }
    };
    this.watcher = setInterval(() => void tick(), everyMs);
    this.watcher.unref();
  }

  /** Remembers the newest verify report of one of an agent's snapshots. */
  recordVerify(tenant: string, agentId: string, rec: VerifyRecord): void {
    const key = `${tenant}/${agentId}`;
    const mine = this.verifies.get(key) ?? new Map<string, VerifyRecord>();
    mine.set(rec.snapshot_id, rec);
    this.verifies.set(key, mine);
  }

  /** The agent's newest verify report, of whichever snapshot. */
  lastVerify(tenant: string, agentId: string): VerifyRecord | undefined {
    let last: VerifyRecord | undefined;
    for (const r of this.verifies.get(`${tenant}/${agentId}`)?.values() ?? [])
      if (!last || r.at_ms >= last.at_ms) last = r;
    return last;
  }

  /**
   * The agent's snapshots whose newest verify did not pass (damaged, untrusted, incomplete), among
   * those still `listed`; the reports of snapshots no longer listed are forgotten.
   */
  failedVerifies(tenant: string, agentId: string, listed: ReadonlySet<string>): VerifyRecord[] {
    const mine = this.verifies.get(`${tenant}/${agentId}`);
    if (!mine) return [];
    for (const id of [...mine.keys()]) if (!listed.has(id)) mine.delete(id);
    return [...mine.values()].filter((r) => r.status !== 'verified').sort((a, b) => a.at_ms - b.at_ms);
  }

  subscribe(listener: (e: ActivityEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: ActivityEvent): void {
    for (const l of this.listeners) l(e);
  }

  /**
   * A text/event-stream: first a `snapshot` event (what runs now and what ended lately), then one event
   * per start, progress and end; with `tenant`, of that tenant's operations only. It ends when the
   * board closes (daemon shutdown) or the client leaves.
   */
  eventStream(tenant?: string): Readable {
    const out = new PassThrough();
    if (this.closed) {
      out.end();
      return out;
    }
    const send = (event: string, data: unknown) =>
      out.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    out.write('retry: 2000\n\n');
    send('snapshot', { running: this.running(tenant), recent: this.recent(tenant) });
    const unsubscribe = this.subscribe((e) => {
      if (ofTenant(e.activity, tenant)) send(e.type, e.activity);
    });
    const keepalive = setInterval(() => out.write(': keep-alive\n\n'), KEEPALIVE_MS);
    keepalive.unref();
    this.streams.add(out);
    const stop = () => {
      clearInterval(keepalive);
      unsubscribe();
      this.streams.delete(out);
    };
    out.once('close', stop);
    out.once('end', stop);
    return out;
  }

  /** Ends every event stream (so a shutdown does not wait for open consoles) and opens no new one. */
  close(): void {
    this.closed = true;
    if (this.watcher) clearInterval(this.watcher);
    for (const s of [...this.streams]) s.end();
  }
}
