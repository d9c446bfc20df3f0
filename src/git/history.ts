// Owns moving git history in and out of the repository as git packs (docs/repository.md §6): the refs
// of a memdir recorded at a point in time, an incremental ("thin") pack of what those refs reach beyond
// a previous snapshot's refs, the pack inside a git bundle file, rebuilding a repository by indexing a
// chain of packs in order, setting its refs and HEAD as a snapshot recorded them, and writing it out as
// a git bundle of every ref (export). Every git runs sanitized through git.ts.

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { BundleDamagedError, GitError, IoError } from '../model/errors.js';
import { hostWriteFailure } from '../util/disk-full.js';
import {
  fsckBuilt,
  fuseTripped,
  type GitFuse,
  type GitResult,
  gitFuse,
  gitResultOf,
  runGit,
  runGitOnFile,
  runGitToFile,
  STRICT_PACK,
  spawnGit,
} from './git.js';

export interface GitRef {
  name: string;
  oid: string;
}

const OID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Every ref of the repository (branches, tags, others), sorted by name, plus `HEAD` when detached. */
export async function recordRefs(memdir: string, detachedHead?: string): Promise<GitRef[]> {
  const r = await runGit(memdir, ['for-each-ref', '--format=%(objectname) %(refname)']);
  if (r.code !== 0) throw new GitError(`listing refs of ${memdir} failed: ${r.stderr}`);
  const refs: GitRef[] = [];
  for (const line of r.stdout.split('\n')) {
    if (line === '') continue;
    const sp = line.indexOf(' ');
    refs.push({ oid: line.slice(0, sp), name: line.slice(sp + 1) });
  }
  if (detachedHead) refs.push({ name: 'HEAD', oid: detachedHead });
  refs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  // Names are read as UTF-8: two that differ only in bytes that are not UTF-8 read as one, and a
  // snapshot recording both would be refused by every restore (stop 56): refused here, named.
  for (let i = 1; i < refs.length; i++)
    if (refs[i]!.name === refs[i - 1]!.name)
      throw new GitError(
        `the memdir ${memdir} has two refs named ${JSON.stringify(refs[i]!.name)} as UTF-8 reads them (their names hold bytes that are not UTF-8): rename one (git update-ref), or use the bundle store`,
      );
  return refs;
}

/** At most this many ids are asked through the program host (runGit); more are streamed here (gitIo). */
const HOSTED_OIDS_MAX = 16_384;

/**
 * Which of `oids` the repository has (as objects). Up to HOSTED_OIDS_MAX ids, buffered (a line per id
 * each way), so on the program host when it is up: a snapshot asks this while its threads plan the
 * database copies. More (a history of up to a million refs) go through a pipe from here, so that the
 * ids and the answer are not also copied through the host's channel.
 */
export async function presentObjects(repo: string, oids: readonly string[]): Promise<Set<string>> {
  if (oids.length === 0) return new Set();
  const args = ['cat-file', '--batch-check=%(objectname) %(objecttype)'];
  const input = `${oids.join('\n')}\n`;
  const r =
    oids.length <= HOSTED_OIDS_MAX ? await runGit(repo, args, input) : await runGitHere(repo, args, input);
  if (r.code !== 0) throw new GitError(`git cat-file failed: ${r.stderr || `exit ${r.code}`}`);
  const have = new Set<string>();
  for (const line of r.stdout.split('\n')) {
    const [oid, type] = line.split(' ');
    if (oid && OID.test(oid) && type !== 'missing') have.add(oid);
  }
  return have;
}

/**
 * Writes to `dst` a pack of every object reachable from `include` and not from `exclude` (thin: deltas
 * may refer to excluded objects). Returns the number of objects in it.
 */
export async function packObjects(
  repo: string,
  include: readonly string[],
  exclude: readonly string[],
  dst: string,
): Promise<number> {
  const input = `${[...new Set(include)].join('\n')}\n${exclude.map((o) => `^${o}`).join('\n')}\n`;
  const args = ['pack-objects', '--stdout', '--revs', '-q', '--delta-base-offset'];
  if (exclude.length > 0) args.push('--thin');
  // into a file git writes itself, so on the program host when it is up: a snapshot packs the history
  // while its threads copy the databases, and a spawn from here would fork this process under them
  const r = await runGitToFile(repo, args, input, dst);
  if (r.code !== 0) {
    // git could not write the file (a full disk): named, with its errno, when the disk agrees (stop 54)
    const host = await hostWriteFailure(new Error(r.stderr), dirname(dst));
    if (host) throw new IoError(`writing git pack-objects's output to ${dst}`, host.cause);
    throw new GitError(`git pack-objects failed: ${r.stderr || `exit ${r.code}`}`);
  }
  return packObjectCount(dst);
}

/** The object count of a pack file (bytes 8..11 of its header). */
export async function packObjectCount(path: string): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(12);
    const { bytesRead } = await fh.read(head, 0, 12, 0);
    if (bytesRead !== 12 || head.toString('latin1', 0, 4) !== 'PACK')
      throw new GitError(`${path} is not a git pack`);
    return head.readUInt32BE(8);
  } finally {
    await fh.close();
  }
}

/**
 * The refs and where the pack starts in a git bundle file (v2 or v3). A bundle with prerequisites is
 * refused: the repository stores complete histories.
 */
export async function readBundleHeader(path: string): Promise<{ refs: GitRef[]; packOffset: number }> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(1024 * 1024);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const text = head.subarray(0, bytesRead).toString('latin1');
    const end = text.indexOf('\n\n');
    if (end < 0) throw new BundleDamagedError('git bundle: header not terminated');
    const lines = text.slice(0, end).split('\n');
    if (lines[0] !== '# v2 git bundle' && lines[0] !== '# v3 git bundle')
      throw new BundleDamagedError('git bundle: unknown signature line');
    const refs: GitRef[] = [];
    for (const line of lines.slice(1)) {
      if (line.startsWith('@')) continue; // v3 capabilities (object-format=sha1 is the only one we write)
      if (line.startsWith('-'))
        throw new BundleDamagedError('git bundle: has prerequisites (not a full history)');
      const sp = line.indexOf(' ');
      const oid = line.slice(0, sp);
      if (!OID.test(oid)) throw new BundleDamagedError('git bundle: malformed ref line');
      refs.push({ oid, name: line.slice(sp + 1) });
    }
    return { refs, packOffset: end + 2 };
  } finally {
    await fh.close();
  }
}

/**
 * Indexes one pack into the repository `repo` (`git index-pack --stdin --fix-thin`), every object
 * checked as a bundle's pack is (STRICT_PACK), under the fuse for a pack of `packBytes` (git.ts
 * GitFuse). The pack is written to a file in the repository's git directory first, and git reads that
 * file on the program host when it is up (runGitOnFile: its name goes once git holds it): not a pipe
 * from this process, whose spawn of git would fork it, large and with threads at work (a repository
 * restore writes its databases meanwhile), ~30-40 ms of its main thread on these machines.
 */
export async function indexPack(repo: string, pack: AsyncIterable<Buffer>, packBytes: number): Promise<void> {
  const dotGit = join(repo, '.git');
  const file = join(
    existsSync(dotGit) ? dotGit : repo,
    `nexo-incoming-${randomBytes(6).toString('hex')}.pack`,
  );
  try {
    const fh = await open(file, 'wx', 0o600);
    try {
      for await (const chunk of pack)
        for (let off = 0; off < chunk.length; )
          off += (
            await fh.write(chunk, off).catch((err: unknown) => {
              throw new IoError(`writing the git history to ${file}`, err);
            })
          ).bytesWritten;
    } finally {
      await fh.close();
    }
    const fuse = gitFuse(packBytes);
    const r = await runGitOnFile(repo, ['index-pack', '--stdin', STRICT_PACK, '--fix-thin'], file, fuse);
    const tripped = fuseTripped(r, fuse);
    if (tripped !== undefined) throw new BundleDamagedError(`git index-pack stopped: ${tripped}`);
    if (r.code !== 0) throw new GitError(`git index-pack failed: ${r.stderr || `exit ${r.code}`}`);
  } finally {
    await rm(file, { force: true }); // (git never started, or the pack never ended)
  }
}

/**
 * Fetches every ref of `source` (a git bundle file or a repository) into the same names in `repo`, and
 * with `head` the objects of its HEAD too (a detached HEAD is no ref). git checks what it receives:
 * every object hashed, the history of every ref complete.
 */
export async function fetchAll(repo: string, source: string, head: boolean): Promise<void> {
  const steps = [['fetch', '-q', '--no-tags', '--update-head-ok', resolve(source), 'refs/*:refs/*']];
  if (head) steps.push(['fetch', '-q', '--no-tags', resolve(source), 'HEAD']);
  // under the fuse: the index-pack the fetch starts reads every object (GIT_ALLOC_LIMIT is inherited;
  // each process has a CPU limit of its own)
  const st = await stat(source);
  const fuse = gitFuse(st.isFile() ? st.size : 0);
  for (const args of steps) {
    const r = await runGit(repo, args, undefined, fuse);
    if (r.code !== 0)
      throw new GitError(`git ${args.slice(0, 1)} of ${source} failed: ${r.stderr || `exit ${r.code}`}`);
  }
}

/**
 * Sets `refs` (names the caller validated, all under `refs/`) in the repository `repo`, in one
 * transaction (`update-ref -z --stdin`): a ref naming an object the repository lacks fails it all.
 * `names`: how the names' bytes are held in the strings — UTF-8 text (a manifest's), or one character
 * per byte (`latin1`: a git bundle header's, read byte for byte), so a name reaches git as its bytes.
 */
export async function writeRefs(
  repo: string,
  refs: readonly GitRef[],
  names: 'utf8' | 'latin1' = 'utf8',
): Promise<void> {
  if (refs.length === 0) return;
  const input = Buffer.concat(
    refs.flatMap((r) => [Buffer.from('update '), Buffer.from(r.name, names), Buffer.from(`\0${r.oid}\0\0`)]),
  );
  // buffered, so on the program host when it is up: a restore sets them while its threads write
  const r = await runGit(repo, ['update-ref', '-z', '--stdin'], input);
  if (r.code !== 0) throw new GitError(`git update-ref failed: ${r.stderr || `exit ${r.code}`}`);
}

/** Points HEAD of `repo` at the branch `ref` (symbolic), or detaches it at the commit `oid`. */
export async function setHead(repo: string, head: { ref: string } | { oid: string }): Promise<void> {
  const r =
    'ref' in head
      ? await runGit(repo, ['symbolic-ref', 'HEAD', head.ref])
      : await runGit(repo, ['update-ref', '--no-deref', 'HEAD', head.oid]);
  if (r.code !== 0) throw new GitError(`setting HEAD failed: ${r.stderr || `exit ${r.code}`}`);
}

/**
 * The commit HEAD of `repo` resolves to, or undefined (unborn, or not a commit). `fuse` for a repository
 * of untrusted objects (a v1 bundle's quarantined `.git`: its HEAD object may be a delta bomb).
 */
export async function headCommit(repo: string, fuse?: GitFuse): Promise<string | undefined> {
  const r = await runGit(repo, ['rev-parse', '-q', '--verify', 'HEAD^{commit}'], undefined, fuse);
  if (r.tripped) throw new GitError(r.stderr);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

/**
 * Subject, author and author time of the commit `oid` in `repo` (as a manifest's git block records them);
 * `fuse` as for headCommit.
 */
export async function commitMeta(
  repo: string,
  oid: string,
  fuse?: GitFuse,
): Promise<{ subject: string; author: string; authorTsMs: number }> {
  const r = await runGit(repo, ['log', '-1', '--format=%an%x00%ae%x00%at%x00%s', oid, '--'], undefined, fuse);
  if (r.code !== 0) throw new GitError(`reading commit ${oid} failed: ${r.stderr || `exit ${r.code}`}`);
  const [name, email, at, subject] = r.stdout.replace(/\n$/, '').split('\0');
  return {
    subject: subject ?? '',
    author: `${name || 'unknown'} <${email ?? ''}>`,
    authorTsMs: Number(at) * 1000,
  };
}

/** Why the history reachable from every ref of `repo` is incomplete (`git fsck --connectivity-only`), or undefined. */
export async function connectivityProblem(repo: string): Promise<string | undefined> {
  const r = await fsckBuilt(repo, ['--connectivity-only', '--no-progress', '--no-dangling']);
  return r.code === 0 ? undefined : r.stderr || `git fsck exited ${r.code}`;
}

/** Writes every ref of `repo`, and HEAD, as a git bundle at `dst` (`git bundle create --all`). */
export async function bundleAll(repo: string, dst: string): Promise<void> {
  const r = await runGit(repo, ['bundle', 'create', '-q', resolve(dst), '--all']);
  if (r.code !== 0) throw new GitError(`git bundle create failed: ${r.stderr || `exit ${r.code}`}`);
}

/**
 * Runs git here, never on the program host, with `input` piped to it: for an input (and an answer) too
 * large to be copied through the host's channel as well. Its result as runGit's.
 */
function runGitHere(cwd: string, args: string[], input: string): Promise<GitResult> {
  const child = spawnGit(cwd, args, ['pipe', 'pipe', 'pipe']);
  const result = gitResultOf(child);
  if (child.pid !== undefined) {
    child.stdin!.on('error', () => {}); // git exiting before it read it all (EPIPE): its status says why
    child.stdin!.end(input);
  }
  return result;
}
