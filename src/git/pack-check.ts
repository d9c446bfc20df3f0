// Owns checking the pack of a git bundle while the bundle streams: the pack bytes are piped into
// `git index-pack --stdin --strict=… --check-self-contained-and-connected` in a scratch bare repository,
// which runs beside the stream (on another core) and checks every object's id, every delta, every
// object as fsck would (a tree git would not check out is damage: git.ts STRICT_PACK), the pack's
// trailer (and that nothing follows it), and that every object a commit, tree or tag names is in the pack; then
// every ref of the bundle's header must name an object of the pack (branches and HEAD a commit). The
// scratch repository is always removed. A restore instead names the repository it is staging (`into`):
// the pack is indexed there, once, and stays when it passes (the restore removes its staging when
// anything fails). git is spawned sanitized (spawnGit, runGit).

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GitError } from '../model/errors.js';
import {
  fuseTripped,
  type GitFuse,
  type GitResult,
  gitFuse,
  initBare,
  initRepo,
  runGit,
  STRICT_PACK,
  spawnGit,
} from './git.js';

const lastLine = (s: string): string => s.trim().split('\n').pop() ?? '';

/** What git's output says went wrong: its first `error:` line (fsck's finding), else its last line. */
const reason = (s: string): string => /^error: (.+)$/m.exec(s)?.[1] ?? lastLine(s);

/** Up to this much pack data may wait for git, so the stream moves on to the memory files meanwhile. */
const MAX_QUEUED = 16 * 1024 * 1024;

export class PackCheck {
  private exited = false;

  private constructor(
    private readonly scratch: string,
    private readonly child: ChildProcess,
    private readonly result: Promise<GitResult>,
    /** The pack is indexed into a repository the caller keeps: nothing is removed here. */
    private readonly keep: boolean,
    private readonly fuse: GitFuse,
  ) {
    const exited = () => {
      this.exited = true;
    };
    result.then(exited, exited);
  }

  /**
   * A scratch repository of the bundle's object format, and index-pack waiting for the pack. With
   * `into` (a directory without a `.git`), a new non-bare repository there (`git init`, git's own
   * layout, as a restored memdir has) takes the place of the scratch repository and is kept.
   * index-pack runs under the fuse (git.ts GitFuse) for a pack of `packBytes` (0: not known).
   */
  static async start(objectFormat: 'sha1' | 'sha256', into?: string, packBytes = 0): Promise<PackCheck> {
    const repo = into ?? (await mkdtemp(join(tmpdir(), 'nexo-pack-check-')));
    try {
      if (into !== undefined) await initRepo(into, objectFormat);
      else await initBare(repo, objectFormat);
      const fuse = gitFuse(packBytes);
      const child = spawnGit(
        repo,
        ['index-pack', '--stdin', STRICT_PACK, '--check-self-contained-and-connected'],
        ['pipe', 'pipe', 'pipe'],
        fuse,
      );
      return new PackCheck(repo, child, collect(child), into !== undefined, fuse);
    } catch (err) {
      if (into === undefined) await rm(repo, { recursive: true, force: true });
      throw err;
    }
  }

  /** Feeds pack bytes (copied: callers reuse their buffers); waits while git is far behind. */
  async write(chunk: Buffer): Promise<void> {
    const stdin = this.child.stdin!;
    if (this.exited || chunk.length === 0) return;
    stdin.write(Buffer.from(chunk));
    if (stdin.writableLength > MAX_QUEUED)
      await Promise.race([once(stdin, 'drain'), this.result]).catch(() => undefined);
  }

  /**
   * Ends the pack and waits for git: undefined when the pack is sound and holds every ref of `refs`,
   * otherwise why not.
   */
  async finish(refs: ReadonlyMap<string, string>): Promise<string | undefined> {
    try {
      this.child.stdin!.end();
      const r = await this.result;
      const tripped = fuseTripped(r, this.fuse);
      if (tripped !== undefined) return `git index-pack stopped: ${tripped}`;
      if (r.code !== 0) return `git index-pack refused the pack: ${reason(r.stderr) || `exit ${r.code}`}`;
      // index-pack --stdin passes bytes after the pack's trailer through to its output (git fetch refuses them)
      if (!/^pack\t[0-9a-f]+\n$/.test(r.stdout)) return 'data after the end of the pack';
      const oids = [...new Set(refs.values())];
      const batch = await runGit(this.scratch, ['cat-file', '--batch-check'], `${oids.join('\n')}\n`);
      if (batch.code !== 0) return `git cat-file failed on the pack: ${lastLine(batch.stderr)}`;
      const types = new Map<string, string>();
      for (const line of batch.stdout.split('\n')) {
        const [oid, type] = line.split(' ');
        if (oid && type) types.set(oid, type);
      }
      for (const [name, oid] of refs) {
        const type = types.get(oid);
        if (type === undefined || type === 'missing')
          return `the git bundle's ${name} names ${oid}, which its pack does not hold`;
        if ((name === 'HEAD' || name.startsWith('refs/heads/')) && type !== 'commit')
          return `the git bundle's ${name} names a ${type}, not a commit`;
      }
      return undefined;
    } finally {
      if (!this.keep) await rm(this.scratch, { recursive: true, force: true });
    }
  }

  /** Stops git and removes the scratch repository (the stream failed before the pack ended). */
  async abort(): Promise<void> {
    this.child.stdin!.end(); // a truncated pack: git stops with an error
    await this.result.catch(() => undefined);
    if (!this.keep) await rm(this.scratch, { recursive: true, force: true });
  }
}

/** Exit code and output of a spawned git; a spawn failure is a GitError. */
function collect(child: ChildProcess): Promise<GitResult> {
  return new Promise((resolvePromise, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdin!.on('error', () => {}); // EPIPE when git stops early: its exit code says why
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => reject(new GitError(`cannot run git: ${e.message}`, { cause: e })));
    child.on('close', (code, signal) =>
      resolvePromise({
        code: code ?? 128,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8').trim(),
      }),
    );
  });
}
