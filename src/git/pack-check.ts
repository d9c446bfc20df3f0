// Owns checking the pack of a git bundle as the bundle streams: the pack bytes are written to a file in
// a scratch bare repository's git directory as they come, and when the bundle's entry ends,
// `git index-pack --stdin --strict=… --check-self-contained-and-connected` reads that file, beside the
// rest of the stream (the memory files, on another core), and checks every object's id, every delta,
// every object as fsck would (a tree git would not check out is damage: git.ts STRICT_PACK), the pack's
// trailer (and that nothing follows it), and that every object a commit, tree or tag names is in the pack; then
// every ref of the bundle's header must name an object of the pack (branches and HEAD a commit). The
// scratch repository is always removed. A restore instead names the repository it is staging (`into`):
// the pack is indexed there, once, and stays when it passes (the restore removes its staging when
// anything fails); the file the bytes were written to never stays (its name goes once git holds it).
// A scratch repository carries this process's id (util/scratch.ts): a killed verify's is swept. git's
// failures to write (a full disk) are the host's I/O errors, not the bundle's damage. git is spawned
// sanitized (spawnGit, runGit).
// git reads a file, not a pipe from this process: the stream's reader hands on chunks without turning
// the event loop while the decompression thread is ahead of it (format/zstd-worker.ts), so a pipe was
// only filled 64 KiB at a time and index-pack finished ~0.4 s after the whole stream, not beside it.

import { closeSync, openSync, writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { IoError } from '../model/errors.js';
import { hostWriteFailure } from '../util/disk-full.js';
import { privateScratch, removeScratch } from '../util/scratch.js';
import {
  fuseTripped,
  type GitFuse,
  type GitResult,
  gitFuse,
  initRepo,
  runGit,
  runGitOnFile,
  STRICT_PACK,
  writeBareRepo,
} from './git.js';

const lastLine = (s: string): string => s.trim().split('\n').pop() ?? '';

/** What git's output says went wrong: its first `error:` line (fsck's finding), else its last line. */
const reason = (s: string): string => /^error: (.+)$/m.exec(s)?.[1] ?? lastLine(s);

/**
 * What git says when it could not write where it was told to (ENOSPC, EDQUOT, EROFS, EIO): a `fatal:`
 * line of its own, never an `error:` line of fsck's, which may quote names from the pack.
 */
const HOST_WRITE_FAILURE =
  /^fatal: .*(No space left on device|Disk quota exceeded|Read-only file system|Input\/output error)$/m;

/** The file the pack's bytes are written to, in the git directory of the repository that indexes it. */
const INCOMING = 'nexo-incoming.pack';

export class PackCheck {
  /** The file's descriptor while bytes are written to it; undefined once it is closed. */
  private fd: number | undefined;
  /** index-pack's result, once its input ended (endInput). */
  private result: Promise<GitResult> | undefined;

  private constructor(
    /** The pack's size (0: not known): git writes a copy of it, and its index, where it checks it. */
    private readonly packBytes: number,
    private readonly scratch: string,
    private readonly incoming: string,
    /** The pack is indexed into a repository the caller keeps: nothing is removed here. */
    private readonly keep: boolean,
    private readonly fuse: GitFuse,
  ) {
    this.fd = openSync(incoming, 'wx', 0o600);
  }

  /**
   * A scratch repository of the bundle's object format, waiting for the pack. With `into` (a directory
   * without a `.git`), a new non-bare repository there (`git init`, git's own layout, as a restored
   * memdir has) takes the place of the scratch repository and is kept. index-pack runs under the fuse
   * (git.ts GitFuse) for a pack of `packBytes` (0: not known).
   */
  static async start(objectFormat: 'sha1' | 'sha256', into?: string, packBytes = 0): Promise<PackCheck> {
    // (a scratch repository carries this process's id: one a killed verify left is swept, util/scratch.ts)
    const repo = into ?? (await privateScratch('pack-check'));
    try {
      if (into !== undefined) await initRepo(into, objectFormat);
      else writeBareRepo(repo, objectFormat);
      const gitDir = into !== undefined ? join(into, '.git') : repo;
      return new PackCheck(packBytes, repo, join(gitDir, INCOMING), into !== undefined, gitFuse(packBytes));
    } catch (err) {
      if (into === undefined) await rm(repo, { recursive: true, force: true });
      throw err;
    }
  }

  /** Writes pack bytes (to the file; the caller may reuse its buffer at once). */
  async write(chunk: Buffer): Promise<void> {
    if (this.fd === undefined || chunk.length === 0) return;
    let off = 0;
    try {
      while (off < chunk.length) off += writeSync(this.fd, chunk, off);
    } catch (err) {
      throw new IoError(`writing the git history to ${this.incoming}`, err);
    }
  }

  /**
   * The pack's last byte was written: index-pack starts on the file (finish() waits for it), on the
   * program host when it is up (a spawn from this process, large and with threads at work, costs them
   * all: util/program-host.ts). git holds the file open: its name goes once git started, and its space
   * once git has read it (a pack needs room for git's own copy of it, not for two).
   */
  endInput(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
    try {
      this.result = runGitOnFile(
        this.scratch,
        ['index-pack', '--stdin', STRICT_PACK, '--check-self-contained-and-connected'],
        this.incoming,
        this.fuse,
      );
    } catch (err) {
      this.result = Promise.reject(err);
    }
    this.result.catch(() => undefined); // awaited in finish() or abort()
  }

  /**
   * Ends the pack and waits for git: undefined when the pack is sound and holds every ref of `refs`,
   * otherwise why not.
   */
  async finish(refs: ReadonlyMap<string, string>): Promise<string | undefined> {
    try {
      this.endInput();
      const r = await this.result!;
      const tripped = fuseTripped(r, this.fuse);
      if (tripped !== undefined) return `git index-pack stopped: ${tripped}`;
      // git could not write (a full disk): this host's trouble, not the bundle's damage, when the disk
      // agrees (stop 54: what git prints can quote the content, util/disk-full.ts)
      if (r.code !== 0 && HOST_WRITE_FAILURE.test(r.stderr)) {
        const host = await hostWriteFailure(
          r.stderr,
          this.scratch,
          `git index-pack could not write the history into ${this.scratch}: ${HOST_WRITE_FAILURE.exec(r.stderr)![0]}`,
          2 * this.packBytes,
        );
        if (host) throw host;
      }
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
      await this.cleanUp();
    }
  }

  /** Stops and removes what was made for the pack (the stream failed before the pack ended). */
  async abort(): Promise<void> {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
    await this.result?.catch(() => undefined);
    await this.cleanUp();
  }

  /** The written pack goes; so does the scratch repository (a restore's own stays). */
  private async cleanUp(): Promise<void> {
    // never thrown: it would take the place of the check's answer or of the error on its way (stop 54)
    await rm(this.incoming, { force: true }).catch(() => {});
    if (!this.keep) await removeScratch(this.scratch);
  }
}
