// Owns checking a bundle's git history ahead of its stream: a bundle written here starts the git
// bundle's entry in a zstd frame of its own, after the databases' (format/writer.ts); that frame is
// found without decoding the first (format/zstd-frames.ts), its first entry read and fed to a
// GitStreamCheck at once, so git's index-pack runs beside the databases instead of after them. It is
// a guess until the stream confirms it: its result is taken only when the bytes checked here hash to
// the SHA-256 the manifest gives the git bundle, as the stream's own entry must (take()); anything else
// (one frame, a second frame that starts with another entry, a read that fails) drops it, and the
// stream's entry is checked as it would be without it. Nothing read here is trusted before that
// comparison. Only verify's check (in a scratch repository) starts early: a restore streams with both
// cores busy, and git beside it only slowed it (docs/decisions.md, "A bundle's history starts a zstd
// frame of its own").

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { GIT_BUNDLE_PATH } from '../format/constants.js';
import { readTar } from '../format/tar.js';
import { zstdDecompress } from '../format/zstd.js';
import { secondFrameOffset } from '../format/zstd-frames.js';
import { GitStreamCheck } from './git-stream.js';

/** The check, made once the entry's header was read; its size and SHA-256 once its body was read whole. */
interface Entry {
  check?: GitStreamCheck;
  size?: number;
  sha256?: string;
}

export class EarlyGitCheck {
  /** Taken or discarded: nothing more to do here. */
  private settled = false;

  private constructor(
    private readonly entry: Entry,
    /** Settles once the entry was read (or could not be). */
    private readonly read: Promise<unknown>,
  ) {}

  /**
   * Starts on the unencrypted bundle at `path`: its second frame found, and the git bundle's entry
   * there checked in the background. Never throws: without one, the check just never matches.
   */
  static start(path: string): EarlyGitCheck {
    const entry: Entry = {};
    return new EarlyGitCheck(
      entry,
      readEntry(path, entry).catch(() => undefined), // (a read that failed has no SHA-256: never taken)
    );
  }

  /**
   * The check, when the bytes it checked are the git bundle the manifest names (`sha256`, `size`);
   * otherwise undefined, and everything it made is gone.
   */
  async take(sha256: string, size: number): Promise<GitStreamCheck | undefined> {
    await this.read;
    const { check } = this.entry;
    if (!this.settled && check && this.entry.sha256 === sha256 && this.entry.size === size) {
      this.settled = true; // the caller's now
      return check;
    }
    await this.discard();
    return undefined;
  }

  /** Stops git and removes what this check made, unless it was taken; idempotent. */
  async discard(): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    await this.read;
    await this.entry.check?.abort();
  }
}

/**
 * Reads the git bundle's entry from the file's second frame and feeds it to a new check (in `entry`,
 * with its size and SHA-256 once read whole); nothing when that frame does not start with a git
 * bundle entry of a plausible size.
 */
async function readEntry(path: string, entry: Entry): Promise<void> {
  const fh = await open(path, 'r');
  let offset: number | undefined;
  let fileSize: number;
  try {
    fileSize = (await fh.stat()).size;
    offset = secondFrameOffset(fh.fd, fileSize);
  } finally {
    await fh.close();
  }
  if (offset === undefined) return;
  // A git pack is compressed already: its entry is about as large as the frames holding it. Far
  // larger is not what the writer made; reading it would only cost.
  const bound = 2 * (fileSize - offset) + 1024 * 1024;
  const file = createReadStream(path, { start: offset, highWaterMark: 256 * 1024 });
  try {
    for await (const e of readTar(zstdDecompress(file, { maxBytes: bound + 64 * 1024, produced: 0 }))) {
      if (e.path !== GIT_BUNDLE_PATH || e.type !== '0' || e.size > bound) return;
      const check = new GitStreamCheck(undefined, undefined, e.size);
      entry.check = check;
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of e.body()) {
        hash.update(chunk);
        size += chunk.length;
        await check.write(chunk);
      }
      check.end();
      entry.size = size;
      entry.sha256 = hash.digest('hex');
      return;
    }
  } finally {
    file.destroy();
  }
}
