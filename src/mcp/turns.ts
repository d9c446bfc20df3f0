// Owns the agent tool's queues: calls run at most `width` at a time, in the order they came. A call
// whose turn comes after the server began to shut down, or after its client cancelled it, runs nothing
// (the SDK sends no response to a cancelled request; a shutdown waits only for the calls that started).

import { ShuttingDownError } from '../model/errors.js';
import type { OperationTracker } from '../server/tracker.js';

/** Why a queued call did not run: its client cancelled it before its turn. */
export class CancelledBeforeTurn extends Error {
  constructor() {
    super('cancelled by the client before it started');
  }
}

export class Turns {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly width: number,
    private readonly tracker: OperationTracker,
  ) {}

  /** Runs `body` in its turn; rejects without running it when the server is closing or `signal` aborted. */
  async run<T>(body: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.running >= this.width) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      if (this.tracker.closed) throw new ShuttingDownError(this.tracker.who);
      if (signal?.aborted) throw new CancelledBeforeTurn();
      return await body();
    } finally {
      // The slot passes to the next call in line, or is freed. Passed on a later turn of the event loop:
      // the answer to this call is written first, and a client found gone then (EPIPE, which closes
      // the server) is known before the next call starts (stop 57: one more snapshot was taken).
      const next = this.waiting.shift();
      if (next) setImmediate(next);
      else this.running--;
    }
  }
}
