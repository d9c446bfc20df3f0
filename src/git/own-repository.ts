// Owns refusing a memdir whose `.git` would make a snapshot take another repository's history: whoever
// writes the memdir (the agent, maybe as another user than the snapshotter) can point its `.git` at any
// repository on the host the snapshotter can read (a `.git` symlink, a `gitdir:` pointer file, a
// `commondir`, `objects/info/alternates`, a symlink where git keeps objects), and git, run by the
// snapshotter, reads that history into the snapshot; restore installs it. Such a `.git` is refused
// unless the operator allows it (`allow_external_git`: linked worktrees and submodules are such
// `.git`s). Cheap: a few lstat calls and the listings of the object directories, no git process
// (docs/decisions.md, stop 46).

import { closeSync, constants, openSync, readSync } from 'node:fs';
import { lstat, readdir, readlink, realpath } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { GitError } from '../model/errors.js';

/** The config key (under `memory.snapshot`) and library option that allow such a `.git`. */
export const ALLOW_EXTERNAL_GIT_KEY = 'memory.snapshot.allow_external_git';

/** Whether `path` (real) is `dir` (real) or inside it. */
function inside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || !(rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel));
}

/** The first `max` bytes (4 KiB) of the regular file `path` as text (never following a symlink, never blocking). */
function readSmall(path: string, max = 4096): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(max);
    let n = 0;
    for (let got = -1; got !== 0 && n < max; n += got) got = readSync(fd, buf, n, max - n, n);
    return buf.subarray(0, n).toString('utf8');
  } catch {
    return undefined; // a directory, a FIFO with no writer: git cannot read it either
  } finally {
    closeSync(fd);
  }
}

/** A real path, or undefined when it does not resolve (git then fails on it, in its own words). */
const realOrUndefined = (p: string): Promise<string | undefined> => realpath(p).catch(() => undefined);

function refuse(memdir: string, what: string): never {
  throw new GitError(
    `memdir ${memdir}: its .git ${what}: a snapshot would take a history from outside the memdir, which ` +
      'whoever writes the memdir can point at any repository the snapshotter can read; refused. If this ' +
      `is the agent's own repository (a linked worktree, a submodule, a shared object store), set ` +
      `${ALLOW_EXTERNAL_GIT_KEY}: true (library: allowExternalGit), or make the memdir a repository of ` +
      'its own (git clone --no-local, or git repack -a -d and remove objects/info/alternates)',
  );
}

/**
 * Refuses (GitError, naming ALLOW_EXTERNAL_GIT_KEY) a memdir whose `.git` reaches a repository outside
 * the memdir: a symlink; a pointer file (`gitdir: …`) resolving outside; a `commondir` resolving
 * outside; an object store that is a symlink, names alternates, or holds a symlink among its
 * directories and files. A memdir without `.git`, or with one git cannot read, passes (inspectRepo
 * says what git says).
 */
export async function refuseExternalGit(memdir: string): Promise<void> {
  const dotGit = join(memdir, '.git');
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(dotGit);
  } catch {
    return;
  }
  if (st.isSymbolicLink())
    refuse(memdir, `is a symbolic link (to ${await readlink(dotGit).catch(() => '?')})`);
  const realMemdir = await realOrUndefined(memdir);
  if (realMemdir === undefined) return;
  let gitDir = dotGit;
  if (st.isFile()) {
    const m = /^gitdir: ?(.+?)\r?\n?$/m.exec(readSmall(dotGit) ?? '');
    if (!m) return;
    const target = resolve(memdir, m[1]!);
    const real = await realOrUndefined(target);
    if (real === undefined) return;
    if (!inside(realMemdir, real))
      refuse(memdir, `is a pointer file to ${target}, outside the memdir (a linked worktree or a submodule)`);
    gitDir = real;
  } else if (!st.isDirectory()) return;
  let commonDir = gitDir;
  const common = readSmall(join(gitDir, 'commondir'));
  if (common !== undefined && common.trim() !== '') {
    const target = resolve(gitDir, common.trim());
    const real = await realOrUndefined(target);
    if (real !== undefined && !inside(realMemdir, real))
      refuse(memdir, `shares the repository ${target} (commondir), outside the memdir`);
    if (real !== undefined) commonDir = real;
  }
  await refuseForeignObjects(memdir, join(commonDir, 'objects'));
  const promisor = promisorOf(readSmall(join(commonDir, 'config'), CONFIG_MAX_BYTES));
  if (promisor !== undefined)
    refuse(
      memdir,
      `is a partial clone (promisor remote ${promisor}): git would fetch the objects it lacks from that remote, into the live repository (fetch them all first: git fetch --refetch ${promisor}, then unset remote.${promisor}.promisor and extensions.partialclone)`,
    );
}

/** The most of a repository's config read for its promisor (a config is a few KB). */
const CONFIG_MAX_BYTES = 1024 * 1024;

/**
 * The promisor remote a git config names (`extensions.partialclone`, or a remote with `promisor =
 * true`), if any: such a repository lacks objects that git fetches from that remote when it needs them
 * (stop 63: a bundle store's snapshot of a partial clone did, changing the live repository).
 */
export function promisorOf(config: string | undefined): string | undefined {
  let section = '';
  let subsection = '';
  for (const raw of (config ?? '').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]/.exec(line);
    if (header) {
      section = header[1]!.toLowerCase();
      subsection = header[2] ?? '';
      continue;
    }
    const entry = /^([A-Za-z][A-Za-z0-9-]*)\s*(?:=\s*"?([^"#;]*)"?)?/.exec(line);
    if (!entry) continue;
    const key = entry[1]!.toLowerCase();
    const value = (entry[2] ?? 'true').trim();
    if (section === 'extensions' && key === 'partialclone' && value !== '') return value;
    if (section === 'remote' && key === 'promisor' && /^(true|yes|on|1)$/i.test(value)) return subsection;
  }
  return undefined;
}

/** The object store's checks: a symlink, alternates, a symlink among its directories and files. */
async function refuseForeignObjects(memdir: string, objects: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(objects);
  } catch {
    return;
  }
  if (st.isSymbolicLink()) refuse(memdir, `keeps its objects in a symbolic link (${objects})`);
  if (!st.isDirectory()) return;
  const alternates = join(objects, 'info', 'alternates');
  if (
    await lstat(alternates).then(
      () => true,
      () => false,
    )
  )
    refuse(memdir, `borrows objects from other repositories (${alternates})`);
  for (const d of await readdir(objects, { withFileTypes: true }).catch(() => [])) {
    if (d.isSymbolicLink()) refuse(memdir, `keeps objects in a symbolic link (${join(objects, d.name)})`);
    if (!d.isDirectory() || d.name === 'info') continue;
    for (const f of await readdir(join(objects, d.name), { withFileTypes: true }).catch(() => []))
      if (f.isSymbolicLink())
        refuse(memdir, `keeps objects in a symbolic link (${join(objects, d.name, f.name)})`);
  }
}
