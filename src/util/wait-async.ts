// Owns waiting on a word of shared memory without blocking the event loop: Atomics.waitAsync (typed
// here, as @types/node 20 does not declare it), for the main thread's side of the worker rings
// (format/zstd-worker.ts, repository/compress-thread.ts).

interface AtomicsWithWaitAsync {
  waitAsync(
    ta: Int32Array,
    index: number,
    value: number,
    timeoutMs: number,
  ): { async: boolean; value: Promise<string> | string };
}

/** Returns once `ta[index]` is no longer `value`, it is notified, or `timeoutMs` have passed. */
export async function waitWhile(
  ta: Int32Array,
  index: number,
  value: number,
  timeoutMs: number,
): Promise<void> {
  const w = (Atomics as unknown as AtomicsWithWaitAsync).waitAsync(ta, index, value, timeoutMs);
  if (w.async) await w.value;
}
