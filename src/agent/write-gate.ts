// Owns the write gate: a short cross-process lock that the host's memory writers hold around each
// write batch (shared: writers do not exclude each other) and that snapshot holds exclusively only
// while it copies the agent into staging, so every component of a snapshot shows the same instant.
// Protocol for writers in other processes and languages: docs/write-gate.md.

import { acquire, acquireExclusiveFair, type HeldLock, LockTimeoutError, tryAcquire } from '../store/lock.js';
import { StoreLayout } from '../store/paths.js';

export interface WriteGateOptions {
  /** How long write() waits for a snapshot to release the gate (default 60 s). */
  timeoutMs?: number;
}

export class WriteGateTimeoutError extends Error {
  constructor(readonly path: string) {
    super(`write gate ${path} stayed closed (a snapshot or restore holds it)`);
  }
}

/**
 * A writer's handle on one agent's gate. In-process writers share one SHARED lock (reference
 * counted), so concurrent write() calls in one process cost one lock round trip.
 */
export class WriteGate {
  private held: HeldLock | undefined;
  private holders = 0;
  private pending: Promise<HeldLock> | undefined;
  private readonly timeoutMs: number;

  constructor(
    readonly path: string,
    opts: WriteGateOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  /** The gate of (tenant, agent) in a snapshot store rooted at `stateRoot`. */
  static forAgent(
    stateRoot: string,
    agentId: string,
    tenant = 'default',
    opts?: WriteGateOptions,
  ): WriteGate {
    return new WriteGate(new StoreLayout(stateRoot).writeGatePath(tenant, agentId), opts);
  }

  /** Runs `batch` while holding the gate shared; a snapshot cannot copy in the middle of it. */
  async write<T>(batch: () => T | Promise<T>): Promise<T> {
    await this.enter();
    try {
      return await batch();
    } finally {
      this.leave();
    }
  }

  private async enter(): Promise<void> {
    this.holders++;
    if (this.held) return;
    try {
      this.pending ??= acquire(this.path, 'shared', this.timeoutMs);
      this.held = await this.pending;
    } catch (err) {
      this.holders--;
      if (err instanceof LockTimeoutError) throw new WriteGateTimeoutError(this.path);
      throw err;
    } finally {
      this.pending = undefined;
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
 * writer holds it, one attempt on this thread takes it at once; otherwise a worker thread waits for it
 * while new batches wait behind, so busy writers cannot starve it.
 */
export async function closeGate(path: string, timeoutMs: number): Promise<ClosedGate> {
  const now = tryAcquire(path, 'exclusive');
  if (now) return { release: async () => now.release() };
  return acquireExclusiveFair(path, timeoutMs);
}
