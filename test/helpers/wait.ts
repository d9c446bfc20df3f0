// Test helper: waiting for a condition by polling it, with no deadline of its own. Tests assert what
// happened, not how long it took: a machine under load is slow, not wrong. A condition that never
// comes true is caught by the runner's timeout (`--test-timeout` in package.json), a hang guard, not
// an assertion.

import { setTimeout as sleep } from 'node:timers/promises';

/** Polls `probe` every `everyMs` until `done` accepts its value, and returns that value. */
export async function until<T>(
  probe: () => T | Promise<T>,
  done: (value: T) => boolean = Boolean,
  everyMs = 50,
): Promise<T> {
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    await sleep(everyMs);
  }
}
