// Owns timers whose delay may exceed what Node's setTimeout holds (2^31 − 1 ms, ~24.8 days): Node runs
// a longer delay after 1 ms instead, with a TimeoutOverflowWarning, so a schedule of 30 days ran its
// snapshots back to back (docs/decisions.md, "Timers longer than 24.8 days"). A long delay is waited
// for in steps of at most that bound, against the monotonic clock (a wall clock stepped back a day
// would add that day to the wait), until its deadline.

/** The longest delay Node's setTimeout holds as asked. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export interface LongTimer {
  clear(): void;
}

/** Monotonic time in ms (performance.now): what setTimeout's own delays are measured on. */
export const monotonicNow = (): number => performance.now();

/** Runs `fn` once after `ms` (any non-negative delay); `clear()` cancels it. */
export function setLongTimeout(fn: () => void, ms: number, now: () => number = monotonicNow): LongTimer {
  const deadline = now() + Math.max(0, ms);
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    const left = deadline - now();
    if (left > MAX_TIMEOUT_MS) timer = setTimeout(arm, MAX_TIMEOUT_MS);
    else timer = setTimeout(fn, Math.max(0, left));
  };
  arm();
  return {
    clear() {
      if (timer) clearTimeout(timer);
    },
  };
}
