// Owns compressing a BlobWriter's new blobs beside a worker thread (compress-thread-main.ts), from the
// main thread's side: each blob is copied into the slot being filled (compress-ring.ts); a full slot is
// submitted, and the thread compresses the oldest submitted slot while this thread chunks and hashes
// the next blobs. When this thread needs the oldest slot back and the worker is still at it, it
// compresses the newest submitted slot itself instead of waiting: two cores for a first snapshot
// instead of one, neither idle while there is work. A blob larger than a slot is compressed here at
// once. Batches come back in the order they were filled, for the writer to put into its packs: the
// packs are the same bytes as without the thread.

import type { Worker } from 'node:worker_threads';
import { zstdBinding } from '../format/zstd.js';
import { nativeModuleError } from '../model/errors.js';
import { startModuleWorker } from '../util/module-worker.js';
import { waitWhile } from '../util/wait-async.js';
import {
  allocateRing,
  CLAIMED,
  compressSlot,
  countAt,
  DONE,
  FAILED,
  FILLING,
  FREE,
  GEN,
  type RingViews,
  ringViews,
  SLOT_BLOBS,
  SLOT_INPUT,
  SLOT_OUTPUT,
  SLOTS,
  STOP,
  SUBMITTED,
  seqAt,
  slotInput,
  slotOutput,
  stateAt,
} from './compress-ring.js';
import { type BlobKind, compressInto } from './pack.js';

/** How long the main thread waits for a claimed slot before it looks at the worker's failure again. */
const WAIT_MS = 50;

export interface StagedBlob {
  id: string;
  kind: BlobKind;
  raw: number;
}

/** A compressed batch; `data(i)` is a view valid until the batch is recycled. */
export interface CompressedBatch {
  blobs: readonly StagedBlob[];
  flags(i: number): number;
  data(i: number): Buffer;
  /** Gives the batch's memory back (call once every blob is in a pack). */
  recycle(): void;
}

/** A batch in fill order: a slot of the ring, or one large blob compressed here. */
type Filled =
  | { local: false; slot: number; blobs: StagedBlob[] }
  | { local: true; blobs: StagedBlob[]; data: Buffer; flags: number };

interface Filling {
  slot: number;
  used: number;
  bound: number;
  blobs: StagedBlob[];
}

export class CompressThread {
  private readonly v: RingViews;
  private readonly worker: Worker;
  private readonly exited: Promise<void>;
  private failure: Error | undefined;
  private stopping = false;
  private filling: Filling | undefined;
  private readonly filled: Filled[] = [];
  private readonly free: number[] = [];
  private seq = 0;
  /** Ids of the blobs staged and not yet placed (BlobWriter.has must see them). */
  private readonly staged = new Set<string>();

  constructor(private readonly level: number) {
    const ring = allocateRing();
    this.v = ringViews(ring);
    for (let s = SLOTS - 1; s >= 0; s--) this.free.push(s);
    // the thread allocates almost nothing on its heap: a small one
    const resourceLimits = { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 32 };
    this.worker = startModuleWorker(import.meta.url, 'compress-thread-main', {
      workerData: { ring, level },
      resourceLimits,
    });
    this.worker.on('message', (m: { message: string; code?: string }) => this.fail(errorOf(m)));
    this.worker.on('error', (err) => this.fail(nativeModuleError(err) ?? err));
    this.exited = new Promise((resolve) => {
      this.worker.once('exit', (code) => {
        if (!this.stopping) this.fail(new Error(`compression thread exited with code ${code}`));
        resolve();
      });
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
  }

  has(id: string): boolean {
    return this.staged.has(id);
  }

  /** Whether any blob is staged and not yet placed. */
  get holding(): boolean {
    return this.staged.size > 0;
  }

  /** Batches filled and not yet taken back (next()). */
  get backlog(): number {
    return this.filled.length;
  }

  /** Whether the oldest batch filled is compressed (next() returns it without waiting or working). */
  get ready(): boolean {
    const f = this.filled[0];
    return f !== undefined && (f.local || Atomics.load(this.v.ctrl, stateAt(f.slot)) === DONE);
  }

  /** Whether every slot is in use (filling, or filled and not yet taken back). */
  get full(): boolean {
    return this.free.length === 0;
  }

  private fits(f: Filling, n: number): boolean {
    return (
      f.used + n <= SLOT_INPUT &&
      f.bound + zstdBinding().compressBound(n) <= SLOT_OUTPUT &&
      f.blobs.length < SLOT_BLOBS
    );
  }

  /**
   * Copies `data` into the slot being filled, or, when it is larger than a slot or no slot is free,
   * compresses it here at once: either way the caller may reuse `data` as soon as this returns.
   */
  stage(kind: BlobKind, id: string, data: Buffer): void {
    if (this.failure) throw this.failure;
    const blob = { id, kind, raw: data.length };
    if (this.filling && !this.fits(this.filling, data.length)) this.send();
    if (data.length > SLOT_INPUT || (!this.filling && this.free.length === 0)) {
      this.send(); // keeps the order
      const out = Buffer.allocUnsafe(zstdBinding().compressBound(data.length));
      const c = compressInto(out, data, this.level);
      this.filled.push({ local: true, blobs: [blob], data: out.subarray(0, c.n), flags: c.flags });
      this.staged.add(id);
      return;
    }
    if (!this.filling) {
      const slot = this.free.pop()!;
      Atomics.store(this.v.ctrl, stateAt(slot), FILLING);
      this.filling = { slot, used: 0, bound: 0, blobs: [] };
    }
    const f = this.filling;
    this.v.lengths[f.slot * SLOT_BLOBS + f.blobs.length] = data.length;
    f.used += data.copy(slotInput(this.v, f.slot), f.used);
    f.bound += zstdBinding().compressBound(data.length);
    f.blobs.push(blob);
    this.staged.add(id);
  }

  /** Submits the slot being filled, if it holds any blob. */
  send(): void {
    const f = this.filling;
    this.filling = undefined;
    if (!f) return;
    const C = this.v.ctrl;
    if (f.blobs.length === 0) {
      Atomics.store(C, stateAt(f.slot), FREE);
      this.free.push(f.slot);
      return;
    }
    Atomics.store(C, countAt(f.slot), f.blobs.length);
    Atomics.store(C, seqAt(f.slot), this.seq++);
    Atomics.store(C, stateAt(f.slot), SUBMITTED);
    this.filled.push({ local: false, slot: f.slot, blobs: f.blobs });
    Atomics.add(C, GEN, 1);
    Atomics.notify(C, GEN);
  }

  /** Claims a submitted slot and compresses it here; false when the worker got it first. */
  private compressHere(slot: number): boolean {
    const C = this.v.ctrl;
    if (Atomics.compareExchange(C, stateAt(slot), SUBMITTED, CLAIMED) !== SUBMITTED) return false;
    compressSlot(this.v, slot, this.level);
    Atomics.store(C, stateAt(slot), DONE);
    return true;
  }

  /**
   * The oldest batch filled, once compressed (undefined when there is none). While the worker is
   * compressing it, this thread compresses the newest submitted slot, and waits only when none is left.
   */
  async next(): Promise<CompressedBatch | undefined> {
    const f = this.filled.shift();
    if (!f) return undefined;
    if (f.local) {
      const { data, flags } = f;
      return { blobs: f.blobs, flags: () => flags, data: () => data, recycle: () => {} };
    }
    const C = this.v.ctrl;
    const { slot } = f;
    for (;;) {
      if (this.failure) throw this.failure;
      const state = Atomics.load(C, stateAt(slot));
      if (state === DONE) break;
      if (state === FAILED) throw this.failure ?? new Error('the compression thread failed');
      if (state === SUBMITTED && this.compressHere(slot)) break;
      if (state !== CLAIMED) continue;
      // the worker has it: help with the newest submitted slot, or wait
      const other = this.newestSubmitted();
      if (other >= 0 && this.compressHere(other)) continue;
      await waitWhile(C, stateAt(slot), CLAIMED, WAIT_MS);
    }
    const base = slot * SLOT_BLOBS;
    const out = slotOutput(this.v, slot);
    const starts = new Uint32Array(f.blobs.length + 1);
    for (let i = 0; i < f.blobs.length; i++) starts[i + 1] = starts[i]! + this.v.sizes[base + i]!;
    return {
      blobs: f.blobs,
      flags: (i) => this.v.flags[base + i]!,
      data: (i) => out.subarray(starts[i]!, starts[i + 1]!),
      recycle: () => {
        Atomics.store(C, stateAt(slot), FREE);
        this.free.push(slot);
      },
    };
  }

  private newestSubmitted(): number {
    let best = -1;
    for (const f of this.filled)
      if (!f.local && Atomics.load(this.v.ctrl, stateAt(f.slot)) === SUBMITTED) best = f.slot;
    return best;
  }

  /** The blob `id` is in a pack now. */
  placed(id: string): void {
    this.staged.delete(id);
  }

  /** Asks the thread to end and waits for it (what it still holds is dropped). */
  async close(): Promise<void> {
    this.staged.clear();
    this.filled.length = 0;
    this.stopping = true;
    Atomics.store(this.v.ctrl, STOP, 1);
    Atomics.notify(this.v.ctrl, GEN);
    await this.exited;
  }
}

function errorOf(m: { message: string; code?: string }): Error {
  const e = new Error(m.message) as NodeJS.ErrnoException;
  if (m.code) e.code = m.code;
  return nativeModuleError(e) ?? e;
}
