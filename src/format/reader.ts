// Owns reading a bundle as a stream: compressed bytes (optionally hashed as they pass) → bounded zstd
// decompression (after age decryption, for encrypted bundles) → strict tar reader → manifest.json first
// (size-capped, parsed and version-gated by manifest.ts) → every further entry classified against the
// manifest (type, path, declared, once, in manifest order, size). Callers (verify, list, restore) decide
// what to do with each entry; nothing here writes to disk.

import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { ageDecryptPayload, type Identity, openPayload, readAgeHeader } from '../crypto/age.js';
import {
  BundleDamagedError,
  EncryptionError,
  NotABundleError,
  SnapshotError,
  UnsafeBundleError,
} from '../model/errors.js';
import { MANIFEST_PATH, MAX_MANIFEST_BYTES, TAR_ENTRY_OVERHEAD, TAR_TRAILER_ALLOWANCE } from './constants.js';
import { layoutProblem, unsafePathReason } from './layout.js';
import { type Artifact, manifestSchemas, type ParsedManifest, parseManifest } from './manifest.js';
import { padding, readTar, type TarEntry } from './tar.js';
import { type SizeLimit, zstdDecompress } from './zstd.js';
import { decompressFileOffThread, OFF_THREAD_MIN_BYTES, type OffThreadStream } from './zstd-worker.js';

const READ_CHUNK = 1024 * 1024;
const isEncryptedName = (p: string): boolean => /\.age$/i.test(p);

/** A problem found in the bundle, with the stable error code it maps to. */
export interface EntryProblem {
  code: 'UNSAFE_ENTRY' | 'BUNDLE_DAMAGED';
  message: string;
}

export interface BundleEntry {
  path: string;
  size: number;
  /** The manifest artifact this entry carries, when it is a valid, declared, first occurrence. */
  artifact?: Artifact;
  /** Why this entry is refused (link, unsafe path, undeclared, duplicate, size mismatch). */
  problem?: EntryProblem;
  body(): AsyncGenerator<Buffer, void, undefined>;
}

/** Size the decompressed tar stream may have, given the manifest (framing allowance included). */
export function decompressedBound(manifestSize: number, artifacts: readonly Artifact[]): number {
  let total = TAR_ENTRY_OVERHEAD + manifestSize + padding(manifestSize) + TAR_TRAILER_ALLOWANCE;
  for (const a of artifacts) {
    const nameBytes = Buffer.byteLength(a.path_in_bundle) + 128;
    total += TAR_ENTRY_OVERHEAD + nameBytes + padding(nameBytes) + a.size_bytes + padding(a.size_bytes);
  }
  return total;
}

export class BundleReader {
  private readonly limit: SizeLimit = { maxBytes: MAX_MANIFEST_BYTES + 8192, produced: 0 };
  private readonly fileHash: Hash | undefined;
  private compressedBytes = 0;
  private tar!: AsyncGenerator<TarEntry, void, undefined>;
  private readonly tarProgress = { ended: false };
  private source: (AsyncIterable<Buffer> & { destroy?: () => void }) | undefined;
  private offThreadStream: OffThreadStream | undefined;
  manifest!: ParsedManifest;
  manifestBytes!: Buffer;
  /** Whether the file is age-encrypted (decided by its content, not its name). */
  encrypted = false;
  /** A manifest read before (KnownManifest), taken when this bundle's manifest is its bytes. */
  private known: KnownManifest | undefined;

  private constructor(
    readonly path: string,
    hashFile: boolean,
    private readonly chunkSize: number,
    private readonly onRead: ((compressedBytes: number) => void) | undefined,
    private readonly offThread: boolean,
    private readonly identities: readonly Identity[] | undefined,
  ) {
    this.fileHash = hashFile ? createHash('sha256') : undefined;
  }

  /**
   * Opens a bundle and reads its manifest. Throws NotABundleError, BundleDamagedError,
   * UnsafeBundleError or SchemaTooNewError; Node I/O errors (e.g. ENOENT) pass through.
   */
  static async open(
    path: string,
    opts: {
      hashFile?: boolean;
      chunkSize?: number;
      onRead?: (compressedBytes: number) => void;
      /**
       * Read, hash and decompress on a worker thread (whole-bundle reads: verify, restore) when the
       * file is large enough to pay for starting one (OFF_THREAD_MIN_BYTES); smaller files are read
       * on this thread, and fileSha256() is then undefined unless hashFile.
       */
      offThread?: boolean;
      /** Identities that may open an age-encrypted bundle. */
      identities?: readonly Identity[];
      /** The manifest as the caller read it before (a restore's first look at the bundle). */
      knownManifest?: KnownManifest;
    } = {},
  ): Promise<BundleReader> {
    const r = new BundleReader(
      path,
      (opts.hashFile ?? false) && !isEncryptedName(path),
      opts.chunkSize ?? READ_CHUNK,
      opts.onRead,
      opts.offThread ?? false,
      opts.identities,
    );
    r.known = opts.knownManifest;
    try {
      await r.start();
      return r;
    } catch (err) {
      r.close();
      throw err;
    }
  }

  private async start(): Promise<void> {
    const age = await readAgeHeader(this.path);
    this.encrypted = age !== undefined;
    let decrypt: { key: Buffer; offset: number } | undefined;
    if (age) {
      if (!this.identities || this.identities.length === 0) {
        throw new EncryptionError(
          'the bundle is age-encrypted: an identity is needed (--decrypt-identity FILE)',
        );
      }
      decrypt = openPayload(this.path, age, this.identities);
    }
    if (this.offThread && (await stat(this.path)).size >= OFF_THREAD_MIN_BYTES) {
      const off = decompressFileOffThread(this.path, this.limit, this.onRead, decrypt);
      this.offThreadStream = off;
      // the manifest's schemas (zod loaded, ~25 ms) built while this thread waits for the first bytes,
      // not after them, while the worker fills its ring and then waits (docs/operations.md, "stop 67")
      if (!this.known)
        setImmediate(() => {
          try {
            manifestSchemas();
          } catch {
            // (the parse meets the same failure and reports it)
          }
        });
      this.tar = readTar(off.chunks, this.tarProgress);
    } else {
      const stream = createReadStream(this.path, {
        highWaterMark: this.chunkSize,
        start: decrypt?.offset ?? 0,
      });
      this.source = stream;
      const self = this;
      async function* compressed(): AsyncGenerator<Buffer> {
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          self.fileHash?.update(chunk);
          self.compressedBytes += chunk.length;
          self.onRead?.(self.compressedBytes);
          yield chunk;
        }
      }
      const raw = decrypt ? ageDecryptPayload(compressed(), decrypt.key) : compressed();
      this.tar = readTar(zstdDecompress(raw, this.limit), this.tarProgress);
    }
    const first = await this.tar.next();
    if (first.done) throw new NotABundleError('empty archive');
    const e = first.value;
    if (e.path !== MANIFEST_PATH || e.type !== '0') {
      throw new NotABundleError(`first entry is ${JSON.stringify(e.path)}, not a regular ${MANIFEST_PATH}`);
    }
    if (e.size > MAX_MANIFEST_BYTES)
      throw new UnsafeBundleError(`manifest.json of ${e.size} bytes exceeds the cap`);
    const parts: Buffer[] = [];
    for await (const c of e.body()) parts.push(Buffer.from(c));
    this.manifestBytes = Buffer.concat(parts);
    try {
      // the same bytes parse the same: a manifest read before is not parsed again (~60 ms on ref-170's)
      this.manifest = this.known?.bytes.equals(this.manifestBytes)
        ? this.known.parsed
        : parseManifest(this.manifestBytes);
    } catch (err) {
      throw err instanceof SnapshotError ? err : new BundleDamagedError((err as Error).message);
    }
    this.limit.maxBytes = decompressedBound(this.manifestBytes.length, this.manifest.manifest.artifacts);
    if (this.limit.produced > this.limit.maxBytes) {
      throw new UnsafeBundleError('decompressed size exceeds what the manifest declares');
    }
  }

  /** Remaining entries, each classified against the manifest. Unsafe entries are reported, not thrown. */
  async *entries(): AsyncGenerator<BundleEntry, void, undefined> {
    const declared = new Map(this.manifest.manifest.artifacts.map((a, i) => [a.path_in_bundle, { a, i }]));
    const seen = new Set<string>();
    let last = -1; // manifest index of the furthest artifact seen so far
    for await (const e of this.tar) {
      const problem = this.classify(e, declared, seen, last);
      seen.add(e.path);
      if (!problem) last = declared.get(e.path)!.i;
      const artifact = problem ? undefined : declared.get(e.path)?.a;
      yield {
        path: e.path,
        size: e.size,
        body: () => e.body(),
        ...(artifact ? { artifact } : {}),
        ...(problem ? { problem } : {}),
      };
    }
  }

  private classify(
    e: TarEntry,
    declared: Map<string, { a: Artifact; i: number }>,
    seen: Set<string>,
    last: number,
  ): EntryProblem | undefined {
    const unsafe = (message: string): EntryProblem => ({ code: 'UNSAFE_ENTRY', message });
    if (e.type === '1')
      return unsafe(`hard link entry ${JSON.stringify(e.path)} → ${JSON.stringify(e.linkpath)}`);
    if (e.type === '2')
      return unsafe(`symbolic link entry ${JSON.stringify(e.path)} → ${JSON.stringify(e.linkpath)}`);
    if (e.type !== '0')
      return unsafe(`entry ${JSON.stringify(e.path)} is not a regular file (type '${e.type}')`);
    const bad = unsafePathReason(e.path);
    if (bad) return unsafe(`${bad}: ${JSON.stringify(e.path)}`);
    if (e.path === MANIFEST_PATH || seen.has(e.path))
      return unsafe(`duplicate entry ${JSON.stringify(e.path)}`);
    const d = declared.get(e.path);
    if (!d) return unsafe(`entry ${JSON.stringify(e.path)} is not declared in the manifest`);
    const a = d.a;
    const layout = layoutProblem(a.path_in_bundle, a.kind, this.manifest.layout);
    if (layout) return unsafe(layout);
    if (d.i < last)
      return {
        code: 'BUNDLE_DAMAGED',
        message: `entry ${JSON.stringify(e.path)} comes after an entry the manifest lists after it`,
      };
    if (e.size !== a.size_bytes) {
      return {
        code: 'BUNDLE_DAMAGED',
        message: `entry ${JSON.stringify(e.path)} has ${e.size} bytes, the manifest declares ${a.size_bytes}`,
      };
    }
    return undefined;
  }

  /** SHA-256 of every compressed byte read so far (the whole file once entries() is exhausted). */
  fileSha256(): string | undefined {
    if (this.offThreadStream) return this.offThreadStream.file()?.sha256;
    return this.fileHash?.copy().digest('hex');
  }

  /**
   * True once the tar end-of-archive marker was read: every entry was read (what follows the marker,
   * checked after it, may still fail the stream).
   */
  get archiveEnded(): boolean {
    return this.tarProgress.ended;
  }

  /** True when the decompressed stream went past the size the manifest allows. */
  get overSizeBound(): boolean {
    return this.limit.produced > this.limit.maxBytes;
  }

  get decompressedBytes(): number {
    return this.limit.produced;
  }

  close(): void {
    this.source?.destroy?.();
    void this.offThreadStream?.chunks.return(undefined);
  }
}

/** Reads only the manifest at the head of a bundle (list, diff): never the whole file. */
export async function readManifestOnly(
  path: string,
  identities?: readonly Identity[],
): Promise<{ parsed: ParsedManifest; bytes: Buffer }> {
  const r = await BundleReader.open(path, { chunkSize: 64 * 1024, ...(identities ? { identities } : {}) });
  r.close();
  return { parsed: r.manifest, bytes: r.manifestBytes };
}

/** A bundle's manifest as read before: its bytes, and what they parsed to (readManifestOnly). */
export interface KnownManifest {
  bytes: Buffer;
  parsed: ParsedManifest;
}

/** True when `err` is a problem with the bundle's content (as opposed to an I/O or usage error). */
export function isBundleContentError(err: unknown): err is SnapshotError {
  return err instanceof SnapshotError && err.exitCode === 2;
}
