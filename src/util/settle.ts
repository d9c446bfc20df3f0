// Owns waiting for parallel steps: unlike Promise.all, every step has finished (so none still writes
// into a directory the caller is about to remove) before the first failure is rethrown.

export async function allSettledOrThrow<T extends readonly unknown[]>(
  promises: { [K in keyof T]: Promise<T[K]> },
): Promise<T> {
  const results = await Promise.allSettled(promises);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
