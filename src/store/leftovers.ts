// Owns recognising crash leftovers in an agent's snapshot directory: staging directories, `.partial`
// bundles, temporary files of atomic writes, and siblings, sidecars or pins whose bundle is gone. Only the
// holder of the agent lock may call cleanLeftovers: every writer of that directory holds the same
// lock, so whatever is left over there while it is held belongs to an operation that died. Also the
// temporary files of atomic writes left in the directories many agents share (`locks/`, `cache/`), which
// no one lock covers: by their age (cleanStaleTemps).

import { lstat, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BUNDLE_EXT,
  ENCRYPTED_EXT,
  PARTIAL_EXT,
  parseBundleFileName,
  RESTORE_WORK_PREFIX,
  SIBLING_EXT,
  SIDECAR_EXT,
  STAGING_PREFIX,
} from './paths.js';
import { PIN_EXT } from './pins.js';

/** Names in `names` that are leftovers, never bundles. */
export function leftoverNames(names: readonly string[]): string[] {
  const bundles = new Set(names.filter((n) => parseBundleFileName(n)));
  return names.filter((n) => {
    if (n.startsWith(STAGING_PREFIX) || n.startsWith(RESTORE_WORK_PREFIX) || n.endsWith(PARTIAL_EXT))
      return true;
    if (n.startsWith('.') && n.includes('.tmp-')) return true;
    for (const ext of [SIBLING_EXT, SIDECAR_EXT, PIN_EXT]) {
      if (n.endsWith(ext)) {
        const bundle = n.slice(0, -ext.length);
        if ((bundle.endsWith(BUNDLE_EXT) || bundle.endsWith(ENCRYPTED_EXT)) && !bundles.has(bundle))
          return true;
      }
    }
    return false;
  });
}

/**
 * Removes the leftovers of dead operations; returns the names removed. Call with the agent lock held.
 * With `olderThanMs`, entries modified more recently are left alone (retention's grace period).
 */
export async function cleanLeftovers(
  dir: string,
  olderThanMs = 0,
  /** A listing of `dir` taken under the lock, to save reading it again. */
  listed?: readonly string[],
  /**
   * Told of each leftover that could not be removed (an I/O error, a read-only remount), which stays for
   * a later operation; the others are removed all the same (stop 54: the first such one failed the
   * snapshot, restore, import or recover that was cleaning up before it started).
   */
  failed?: (name: string, err: unknown) => void,
): Promise<string[]> {
  let names: readonly string[];
  try {
    names = listed ?? (await readdir(dir));
  } catch {
    return [];
  }
  const gone: string[] = [];
  for (const n of leftoverNames(names)) {
    if (olderThanMs > 0) {
      const s = await stat(join(dir, n)).catch(() => undefined);
      if (!s || Date.now() - s.mtimeMs < olderThanMs) continue;
    }
    try {
      await rm(join(dir, n), { recursive: true, force: true });
      gone.push(n);
    } catch (err) {
      failed?.(n, err);
    }
  }
  return gone;
}

/**
 * The temporary files (store/atomic.ts tempPathFor: `.<name>.tmp-<12 hex>`) of the files this package
 * writes atomically in the shared directories: in `locks/` an exclusive holder's `<agent>.lock.owner`
 * and an automatic snapshot's `<agent>.<kind>.last`, in the state root's `cache/` find's
 * `find-<repository>-<user>.json`. Nothing else there is ever removed by name.
 */
export const SHARED_DIR_TEMPS = {
  locks: /^\..+\.(lock\.owner|last)\.tmp-[0-9a-f]{12}$/,
  cache: /^\.find-[^/]+\.json\.tmp-[0-9a-f]{12}$/,
} as const;

/**
 * How old a temporary file in a shared directory must be to be a leftover: its writer renames or
 * removes it within milliseconds (stop 46: a write that failed on a full disk used to leave it).
 */
export const STALE_TEMP_MS = 10 * 60_000;

/**
 * Removes the regular files of `dir` whose names `pattern` matches (SHARED_DIR_TEMPS) and that were
 * last modified more than `olderThanMs` ago; returns their paths. Takes no lock: a live writer's file is
 * milliseconds old. A directory that cannot be read has none.
 */
export async function cleanStaleTemps(
  dir: string,
  pattern: RegExp,
  olderThanMs = STALE_TEMP_MS,
  now = Date.now(),
): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const gone: string[] = [];
  for (const n of names) {
    if (!pattern.test(n)) continue;
    const path = join(dir, n);
    const s = await lstat(path).catch(() => undefined);
    if (!s?.isFile() || now - s.mtimeMs < olderThanMs) continue;
    await rm(path, { force: true });
    gone.push(path);
  }
  return gone;
}
