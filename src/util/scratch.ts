// Owns the private temporary directories of operations that write decrypted or unredacted bytes
// outside the store (a download's copy, a re-pack for a redacted export, a deep verify's databases, the
// git history a verify checks, decrypted when the bundle is, a repository export's staging, the sides of
// a diff, a restore dry run's databases, a browsed database):
// `$TMPDIR/nexo-<kind>-<pid>-<random>`, mode 0700 (mkdtemp). Each operation removes its own; one left
// by a process that was killed (its pid no longer runs) is removed by the next operation that makes
// one, in any process of this package, so decrypted memory does not stay on the disk for good
// (docs/decisions.md, stop 38).

import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The kinds of scratch directory, each a name prefix `nexo-<kind>-`. */
export type ScratchKind =
  | 'download'
  | 'repack'
  | 'verify'
  | 'pack-check'
  | 'export'
  | 'diff'
  | 'dry-run'
  | 'browse';

const LEFTOVER = /^nexo-(download|repack|verify|pack-check|export|diff|dry-run|browse)-(\d+)-/;

/** A new private temporary directory for one operation; first, those of processes that are gone are removed. */
export async function privateScratch(kind: ScratchKind): Promise<string> {
  await sweepScratchLeftovers().catch(() => {});
  return mkdtemp(join(tmpdir(), `nexo-${kind}-${process.pid}-`));
}

/** Removes the scratch directories (every kind) of processes that are gone; returns how many. */
export async function sweepScratchLeftovers(dir = tmpdir()): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir)) {
    const m = LEFTOVER.exec(name);
    if (!m || alive(Number(m[2]))) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed++;
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
