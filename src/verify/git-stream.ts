// Owns checking a v2 bundle's git history (`git/memdir.bundle`) while it streams through verify: the
// git bundle's header (format/git-bundle.ts) against the manifest's HEAD, and its pack through
// `git index-pack` in a scratch repository (git/pack-check.ts), which runs beside the rest of the stream.
// The result is one problem message or undefined; restore can rebuild a repository from what passes,
// or names the repository it stages (`into`), where the pack is then indexed once and kept.

import { type ExpectedHead, GitBundleHeaderReader, headProblem } from '../format/git-bundle.js';
import type { GitInfo } from '../format/manifest.js';
import { PackCheck } from '../git/pack-check.js';

export class GitStreamCheck {
  private readonly reader = new GitBundleHeaderReader();
  private pack: Promise<PackCheck> | undefined;
  private problem: string | undefined;
  private ended = false;

  constructor(
    /** The manifest's git block, whose HEAD the bundle's header must name (undefined: expectHead later). */
    private git: GitInfo | undefined,
    /** A directory to make the repository that indexes the pack in, kept (PackCheck.start). */
    private readonly into?: string,
    /** The git bundle's size (its tar header's), which the fuse on index-pack scales with. */
    private readonly bundleBytes = 0,
  ) {}

  /** Whether the pack is indexed into a repository that is kept (`into`). */
  get keeps(): boolean {
    return this.into !== undefined;
  }

  /** The refs of the bundle's header (names already checked), once its header was read. */
  get refs(): ReadonlyMap<string, string> | undefined {
    return this.reader.header?.refs;
  }

  /**
   * The manifest's git block, for a check started without it (verify/early-git.ts): with a repository,
   * the bundle's header must name its HEAD; a header read already is checked now.
   */
  expectHead(git: GitInfo): void {
    this.git = git;
    const header = this.reader.header;
    if (header && git.repository === 'present' && this.problem === undefined)
      this.problem = headProblem(header, git as ExpectedHead);
  }

  /** Feeds the next bytes of the git bundle, in order. */
  async write(chunk: Buffer): Promise<void> {
    if (this.problem !== undefined) return;
    let packBytes: Buffer;
    try {
      packBytes = this.reader.push(chunk);
    } catch (err) {
      this.problem = (err as Error).message;
      return;
    }
    const header = this.reader.header;
    if (!header) return;
    if (!this.pack) {
      if (this.git) this.expectHead(this.git);
      if (this.problem !== undefined) return;
      this.pack = PackCheck.start(header.objectFormat, this.into, this.bundleBytes);
    }
    await (await this.pack).write(packBytes);
  }

  /**
   * The git bundle's last byte was fed: git's input ends now, so index-pack resolves the pack's deltas
   * while the stream goes on with the entries after it (the memory files), not after the whole stream.
   */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.problem === undefined) {
      try {
        this.reader.end();
      } catch (err) {
        this.problem = (err as Error).message;
      }
    }
    if (this.problem === undefined)
      void this.pack?.then(
        (p) => p.endInput(),
        () => undefined,
      );
  }

  /** After the last byte (end() is implied): why the git bundle cannot be restored, or undefined. */
  async finish(): Promise<string | undefined> {
    this.end();
    const pack = await this.pack;
    if (!pack) return this.problem;
    if (this.problem !== undefined) {
      await pack.abort();
      return this.problem;
    }
    return pack.finish(this.reader.header!.refs);
  }

  /** The stream failed: stop git and clean up. */
  async abort(): Promise<void> {
    await (await this.pack?.catch(() => undefined))?.abort();
  }
}
