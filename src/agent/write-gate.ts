// Owns the write gate: a short cross-process lock that the host's memory writers hold around each
// write batch (shared: writers do not exclude each other) and that snapshot holds exclusively only
// while it copies the agent into staging, so every component of a snapshot shows the same instant.
// A writer that gets the gate while a killed restore's journal is still pending lets it go and waits
// for recovery: what it wrote into a half-swapped agent would be lost by the rollback.
// A batch starts only when no snapshot or restore waits for the gate (its `.wanted` marker lock): joining
// the shared lock the process already holds would keep the gate open for as long as batches overlap.
// Protocol for writers in other processes and languages: docs/locking.md ("The write gate").

import { readFileSync } from 'node:fs';
import { InvalidInputError } from '../model/errors.js';
import {
  acquire,
  acquireExclusiveFair,
  type HeldLock,
  LockTimeoutError,
  lockWanted,
  tryAcquire,
} from '../store/lock.js';
import { StoreLayout } from '../store/paths.js';

export interface WriteGateOptions {
  /** How long write() waits for a snapshot to release the gate (default 60 s). */
  timeoutMs?: number;
  /**
   * Restore journals of the memory this gate guards (forAgent sets them): while one of them is pending
   * (an interrupted restore not yet recovered), write() waits, then throws.
   */
  restoreJournals?: readonly string[];
}

export class WriteGateTimeoutError extends Error {
  override readonly name = 'WriteGateTimeoutError';
  constructor(
    readonly path: string,
    /** The gate was free, but an interrupted restore of this memory waits for `nexo-memory recover`. */
    readonly restorePending = false,
  ) {
    super(
      restorePending
        ? `write gate ${path}: an interrupted restore of this agent is not recovered yet (run \`nexo-memory recover\`, or any operation on the agent)`
        : `write gate ${path} stayed closed (a snapshot or restore holds it)`,
    );
  }
}

/** How often a writer looks again for an interrupted restore's recovery. */
const RESTORE_POLL_MS = 100;
/** The longest a writer sleeps between two looks at a waiting snapshot's marker. */
const WANTED_POLL_MAX_MS = 16;
/**
 * How long a write() waits for a waiting snapshot while its own process holds the gate before it joins
 * anyway: a write() nested in a batch would otherwise wait for the snapshot, which waits for the outer
 * batch (a deadlock until one of them timed out). Batches shorter than this never reach it.
 */
const NESTED_JOIN_MS = 1_000;

/**
 * The lock file a snapshot or restore holds while it waits for the gate at `gatePath` (closeGate): a
 * batch does not start while it is held, so the batches in flight drain and the gate gets free.
 */
export function gateWantedPath(gatePath: string): string {
  return `${gatePath}.wanted`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Whether one of `journals` is a restore that started its swap and neither committed nor was rolled
 * back (the restorer died; only recover() may touch the agent now). A journal that cannot be read or
 * parsed counts as pending.
 */
function restorePending(journals: readonly string[]): boolean {
  for (const path of journals) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      return true;
    }
    try {
      if ((JSON.parse(text) as { phase?: unknown }).phase !== 'committed') return true;
    } catch {
      return true;
    }
  }
  return false;
}

/**
 * A writer's handle on one agent's gate. In-process writers share one SHARED lock (reference
 * counted), so concurrent write() calls in one process cost one lock round trip. A write() that starts
 * while a snapshot or restore waits for the gate does not join it: it waits until that one has had the
 * gate, so the batches in flight end, the lock is released and the snapshot is not starved. A write()
 * called inside a batch while a snapshot waits joins after NESTED_JOIN_MS (the outer batch cannot end
 * before it does); avoid it: it delays the snapshot by that much.
 */
export class WriteGate {
  private held: HeldLock | undefined;
  private holders = 0;
  private pending: Promise<HeldLock> | undefined;
  private readonly timeoutMs: number;
  private readonly journals: readonly string[];
  private readonly wanted: string;

  constructor(
    readonly path: string,
    opts: WriteGateOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.journals = opts.restoreJournals ?? [];
    this.wanted = gateWantedPath(path);
  }

  /** The gate of (tenant, agent) in a snapshot store rooted at `stateRoot`. */
  static forAgent(
    stateRoot: string,
    agentId: string,
    tenant = 'default',
    opts?: WriteGateOptions,
  ): WriteGate {
    const layout = new StoreLayout(stateRoot);
    // the default tenant's memory may be shared by other tenants' agents of the same id (docs/locking.md)
    const journals = [...new Set([tenant, 'default'])].map((t) => layout.journalPath(t, agentId));
    return new WriteGate(layout.writeGatePath(tenant, agentId), { restoreJournals: journals, ...opts });
  }

  /** Runs `batch` while holding the gate shared; a snapshot cannot copy in the middle of it. */
  async write<T>(batch: () => T | Promise<T>): Promise<T> {
    if (typeof batch !== 'function')
      throw new InvalidInputError(`write() takes the batch to run (a function), got ${typeof batch}`);
    await this.enter();
    try {
      return await batch();
    } finally {
      this.leave();
    }
  }

  private async enter(): Promise<void> {
    const deadline = performance.now() + this.timeoutMs;
    await this.untilNotWanted(deadline);
    this.holders++;
    if (this.held) return;
    try {
      this.pending ??= this.acquireUnlessRestorePending(deadline);
      this.held = await this.pending;
    } catch (err) {
      this.holders--;
      if (err instanceof LockTimeoutError) throw new WriteGateTimeoutError(this.path);
      throw err;
    } finally {
      this.pending = undefined;
    }
  }

  /**
   * Returns once no snapshot or restore waits for the gate (or holds it while marking), looking again
   * with a short backoff; WriteGateTimeoutError at the deadline.
   */
  private async untilNotWanted(deadline: number): Promise<void> {
    let delay = 1;
    const joinAt = performance.now() + NESTED_JOIN_MS;
    while (lockWanted(this.wanted)) {
      // held by this process for that long: perhaps a write() nested in a batch, which must join
      if (this.held && performance.now() >= joinAt) return;
      const left = deadline - performance.now();
      if (left <= 0) throw new WriteGateTimeoutError(this.path);
      await sleep(Math.min(delay, left));
      delay = Math.min(delay * 2, WANTED_POLL_MAX_MS);
    }
  }

  /** The gate, shared, once no interrupted restore of this memory is pending (waits up to the deadline). */
  private async acquireUnlessRestorePending(deadline: number): Promise<HeldLock> {
    for (;;) {
      const held = await acquire(this.path, 'shared', Math.max(0, deadline - performance.now()));
      if (!restorePending(this.journals)) return held;
      held.release(); // recover() needs the gate closed
      if (performance.now() >= deadline) throw new WriteGateTimeoutError(this.path, true);
      await sleep(RESTORE_POLL_MS);
    }
  }

  private leave(): void {
    this.holders--;
    if (this.holders === 0 && this.held) {
      this.held.release();
      this.held = undefined;
    }
  }
}

/** The gate held exclusively by closeGate; release() is idempotent. */
export interface ClosedGate {
  release(): Promise<void>;
}

/**
 * Snapshot/restore side: hold the gate exclusively (no writer inside a batch) for a short step. When no
 * writer holds it, one attempt on this thread takes it at once; otherwise a worker thread waits for it,
 * holding the gate's `.wanted` marker and SQLite's PENDING lock, while new batches wait behind (they
 * neither take the lock nor join their process's), so busy writers cannot starve it.
 */
export async function closeGate(path: string, timeoutMs: number): Promise<ClosedGate> {
  const now = tryAcquire(path, 'exclusive');
  if (now) return { release: async () => now.release() };
  return acquireExclusiveFair(path, timeoutMs, gateWantedPath(path));
}
