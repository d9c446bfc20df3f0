// Owns turning the raw `.git` files of a v1 bundle into a repository git can read without trusting
// them. Only object and ref data is taken (HEAD, packed-refs, refs/**, loose objects, packs and their
// indexes); config, hooks, info/, alternates, the index, logs and everything else a `.git` can hold is
// never written (the sinks ask `isV1GitData`) and never moved in. The data goes into a new bare
// repository with a config git writes, HEAD set by us after checking it names a branch or a commit.
// Readers then fetch from that repository (restore, diff) or `git fsck` it (verify --deep).

import type { Dirent } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { BundleDamagedError } from '../model/errors.js';
import { fsckBuilt, initBare, runGit } from './git.js';

const LOOSE_OBJECT = /^objects\/[0-9a-f]{2}\/[0-9a-f]{38}$/;
const PACK = /^objects\/pack\/pack-[0-9a-f]{40}\.(pack|idx)$/;

/** Whether a path under a v1 bundle's `git/` is object or ref data (the only files ever used). */
export function isV1GitData(rel: string): boolean {
  return (
    rel === 'HEAD' ||
    rel === 'packed-refs' ||
    (rel.startsWith('refs/') && rel.length > 5) ||
    LOOSE_OBJECT.test(rel) ||
    PACK.test(rel)
  );
}

/** HEAD as a v1 bundle's HEAD file says: a branch, or a commit (detached). */
export type V1Head = { ref: string; detached: false } | { oid: string; detached: true };

async function parseHead(raw: string, scratch: string): Promise<V1Head> {
  const file = join(raw, 'HEAD');
  if ((await stat(file)).size > 4096) throw new BundleDamagedError('git/HEAD is larger than a ref can be');
  const text = await readFile(file, 'utf8');
  const oid = /^([0-9a-f]{40})\n?$/.exec(text);
  if (oid) return { oid: oid[1]!, detached: true };
  const sym = /^ref: (refs\/heads\/[^\n]+)\n?$/.exec(text);
  if (sym && (await runGit(scratch, ['check-ref-format', sym[1]!])).code === 0)
    return { ref: sym[1]!, detached: false };
  throw new BundleDamagedError(
    `git/HEAD names neither a branch (ref: refs/heads/<name>) nor a commit: ${JSON.stringify(text.slice(0, 120))}`,
  );
}

/** Regular files under `dir`, as `/`-separated paths relative to `root`. */
async function filesUnder(root: string, dir: string, out: string[]): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw err;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) await filesUnder(root, path, out);
    else if (e.isFile()) out.push(relative(root, path).split(sep).join('/'));
  }
  return out;
}

/**
 * Builds the bare repository `dst` (created) from the object and ref data in `raw` (a v1 bundle's
 * `git/` files as staged; moved, not copied). Returns HEAD as the bundle recorded it. A HEAD that names
 * neither a branch nor a commit, or data that collides with the repository's layout, is damage.
 */
export async function quarantineV1(raw: string, dst: string): Promise<V1Head> {
  await initBare(dst);
  const head = await parseHead(raw, dst);
  for (const rel of await filesUnder(raw, raw, [])) {
    if (rel === 'HEAD' || !isV1GitData(rel)) continue;
    const to = join(dst, ...rel.split('/'));
    try {
      await mkdir(dirname(to), { recursive: true });
      await rename(join(raw, ...rel.split('/')), to);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EISDIR' || code === 'ENOTDIR' || code === 'EEXIST' || code === 'ENOTEMPTY')
        throw new BundleDamagedError(`git/${rel} collides with the repository layout`);
      throw err;
    }
  }
  const set = head.detached
    ? await runGit(dst, ['update-ref', '--no-deref', 'HEAD', head.oid])
    : await runGit(dst, ['symbolic-ref', 'HEAD', head.ref]);
  if (set.code !== 0) throw new BundleDamagedError(`git/HEAD cannot be set: ${set.stderr}`);
  return head;
}

/** `ok`, or what `git fsck` reports for the history in a v1 bundle's raw `.git` files (quarantined). */
export async function fsckV1(raw: string): Promise<string> {
  const scratch = await mkdtemp(join(dirname(raw), 'quarantine-'));
  try {
    const repo = join(scratch, 'repo.git');
    try {
      await quarantineV1(raw, repo);
    } catch (err) {
      if (err instanceof BundleDamagedError) return err.message;
      throw err;
    }
    const r = await fsckBuilt(repo, ['--no-progress', '--no-dangling']);
    return r.code === 0 ? 'ok' : r.stderr || `git fsck exited ${r.code}`;
  } finally {
    // (inside the caller's scratch, which goes with it: never thrown over fsck's answer, stop 54)
    await rm(scratch, { recursive: true, force: true }).catch(() => {});
  }
}
