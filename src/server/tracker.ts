// Owns the daemon's bookkeeping of operations in progress (API calls, scheduled snapshots, downloads),
// so a shutdown can refuse new ones and wait until every running one has finished. onClose tells what
// waits on a client (a request body still arriving, a response being sent) that the shutdown began.

import { ShuttingDownError } from '../model/errors.js';

export class OperationTracker {
  private readonly running = new Set<Promise<unknown>>();
  private closing = false;
  private readonly closeListeners = new Set<() => void>();

  /** `who`: what refuses new operations once closing, as its clients know it (ShuttingDownError). */
  constructor(readonly who = 'the daemon') {}

  /** Calls `fn` once close() is called (at once if it was); returns the function that unsubscribes. */
  onClose(fn: () => void): () => void {
    if (this.closing) {
      fn();
      return () => {};
    }
    this.closeListeners.add(fn);
    return () => this.closeListeners.delete(fn);
  }

  get closed(): boolean {
    return this.closing;
  }

  get inFlight(): number {
    return this.running.size;
  }

  /** Runs `op` as a tracked operation; ShuttingDownError once close() was called. */
  run<T>(op: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new ShuttingDownError(this.who));
    const p = op();
    const settled = p.then(
      () => undefined,
      () => undefined,
    );
    this.running.add(settled);
    void settled.then(() => this.running.delete(settled));
    return p;
  }

  /** Tracks something that ends with a callback (a download stream); call the returned function once. */
  begin(): () => void {
    if (this.closing) throw new ShuttingDownError(this.who);
    let done!: () => void;
    const p = new Promise<void>((r) => {
      done = r;
    });
    this.running.add(p);
    void p.then(() => this.running.delete(p));
    return done;
  }

  /** Refuses new operations and resolves when every running one has finished. */
  async close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      for (const fn of [...this.closeListeners]) fn();
      this.closeListeners.clear();
    }
    while (this.running.size > 0) await Promise.all([...this.running]);
  }
}
