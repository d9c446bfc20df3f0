// Owns the private temporary directories of operations that write decrypted or unredacted bytes
// outside the store (a download's copy, a re-pack for a redacted export, a deep verify's databases, the
// git history a verify checks, decrypted when the bundle is, a repository export's staging, the sides of
// a diff, a restore dry run's databases, a browsed database):
// `$TMPDIR/nexo-<kind>-<pid>-<random>`, mode 0700 (mkdtemp). Each operation removes its own; one left
// by a process that was killed (its pid no longer runs) is removed by the next operation that makes
// one, in any process of this package, so decrypted memory does not stay on the disk for good
// (docs/decisions.md, stop 38); one this process failed to remove, by its own next one (a daemon runs
// for weeks).

import { lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { faultPoint } from './faults.js';

/** The kinds of scratch directory, each a name prefix `nexo-<kind>-`. */
const KINDS = ['download', 'repack', 'verify', 'pack-check', 'export', 'diff', 'dry-run', 'browse'] as const;
export type ScratchKind = (typeof KINDS)[number];

/**
 * The exact name mkdtemp gives (`nexo-<kind>-<pid>-` and six random characters): a file or directory a
 * user named alike (`nexo-export-20261206-agent.tar.zst`) is not taken for one (stop 52).
 */
const LEFTOVER = new RegExp(`^nexo-(${KINDS.join('|')})-(\\d{1,10})-[A-Za-z0-9]{6}$`);

/** This process's scratch directories that could not be removed: tried again by its next privateScratch. */
const stuck = new Set<string>();

/**
 * Removes an operation's scratch directory, never throwing: one that cannot be removed now (an I/O
 * error, a file system remounted read-only) is tried again when this process makes its next one, and
 * swept by any later operation once this process is gone. Called from `finally` blocks and stream ends: its failure took the place of the error that
 * was on its way (a verify's or a diff's), failed an operation that had succeeded, or ended the daemon
 * as an unhandled rejection (a download's, found in stop 54). The fault point `scratch.remove` makes it
 * fail in tests.
 */
export async function removeScratch(dir: string): Promise<void> {
  try {
    faultPoint('scratch.remove');
    await rm(dir, { recursive: true, force: true });
  } catch {
    stuck.add(dir);
  }
}

/**
 * A new private temporary directory for one operation; first, those of processes that are gone are
 * removed, and this process's own that could not be removed before.
 */
export async function privateScratch(kind: ScratchKind): Promise<string> {
  for (const dir of stuck) {
    stuck.delete(dir);
    await removeScratch(dir);
  }
  await sweepScratchLeftovers().catch(() => {});
  return mkdtemp(join(tmpdir(), `nexo-${kind}-${process.pid}-`));
}

/**
 * Removes the scratch directories (every kind) of processes that are gone; returns how many. Only what
 * mkdtemp made for this user is one: a directory (not a symbolic link) of that exact name, owned by
 * this user, mode 0700.
 */
export async function sweepScratchLeftovers(dir = tmpdir()): Promise<number> {
  let removed = 0;
  const uid = process.getuid?.();
  for (const name of await readdir(dir)) {
    const m = LEFTOVER.exec(name);
    if (!m || alive(Number(m[2]))) continue;
    const st = await lstat(join(dir, name)).catch(() => undefined);
    if (!st?.isDirectory() || (st.mode & 0o777) !== 0o700 || (uid !== undefined && st.uid !== uid)) continue;
    try {
      await rm(join(dir, name), { recursive: true, force: true });
      removed++;
    } catch {
      // one that cannot be removed now does not keep the others (stop 54); tried again next time
    }
  }
  return removed;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // someone else's process: not ours to judge
  }
}
