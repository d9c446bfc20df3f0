// Owns recognising crash leftovers in an agent's snapshot directory: staging directories, `.partial`
// bundles, temporary files of atomic writes, and siblings, sidecars or pins whose bundle is gone. Only the
// holder of the agent lock may call cleanLeftovers: every writer of that directory holds the same
// lock, so whatever is left over there while it is held belongs to an operation that died.

import { readdir, rm, stat } from 'node:fs/promises';
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
    await rm(join(dir, n), { recursive: true, force: true });
    gone.push(n);
  }
  return gone;
}
