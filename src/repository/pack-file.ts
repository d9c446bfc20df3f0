// Owns packing ahead on a copy thread: a database copy's chunks compressed (and, in an encrypted
// repository, sealed) straight into pack files of the repository's format (pack.ts, docs/repository.md
// §4), each written blob by blob into a scratch file, hashed as it is written, closed at a target size
// with its header and made durable. The main thread then publishes each file under its name as it is
// (BlobWriter.adoptPack): it never reads, copies or hashes those bytes again. A chunk met twice in one
// job is packed once.

import { createHash, type Hash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { zstdBinding } from '../format/zstd.js';
import { packKey, SALT, sealBlob } from './crypto.js';
import { compressInto, KIND_DATA, packTail } from './pack.js';

/** A pack written by a copy thread: its scratch file, name (SHA-256 of its bytes) and blobs. */
export interface AheadPack {
  path: string;
  id: string;
  size: number;
  /** The pack key's salt, hex (encrypted repositories). */
  salt?: string;
  /** Its blobs in pack order (all data blobs; offsets are the running sum of `stored`). */
  ids: Uint8Array;
  flags: Uint8Array;
  stored: Uint32Array;
  raw: Uint32Array;
}

export interface AheadPackJob {
  /** zstd level (the repository's). */
  level: number;
  /** Pack files are `<prefix>-<n>` (new files, mode 0600; removed here when the job fails). */
  prefix: string;
  /** A pack is closed once its blobs reach this many bytes. */
  target: number;
  /** The repository's master key (encrypted repositories). */
  master?: Uint8Array;
}

/** Bytes of stored blobs gathered before they are written out. */
const WRITE_BLOCK = 1024 * 1024;

/** One pack file being written. */
class PackFile {
  private readonly fd: number;
  private readonly hash: Hash = createHash('sha256');
  private buf: Buffer;
  private used = 0;
  /** Bytes of blobs in the pack (written or gathered). */
  size = 0;
  readonly ids: Buffer[] = [];
  readonly flags: number[] = [];
  readonly stored: number[] = [];
  readonly raw: number[] = [];
  private readonly salt: Buffer | undefined;
  private readonly key: Buffer | undefined;

  constructor(
    readonly path: string,
    buf: Buffer,
    master: Uint8Array | undefined,
  ) {
    this.buf = buf;
    this.fd = openSync(path, 'wx', 0o600);
    if (master) {
      this.salt = randomBytes(SALT);
      this.key = packKey({ master: Buffer.from(master) }, this.salt);
    }
  }

  /** Compresses (and seals) `data`, blob `id`, after the blobs before it. */
  add(id: Buffer, data: Buffer, level: number): void {
    const bound = zstdBinding().compressBound(data.length);
    if (this.used + bound > this.buf.length) {
      this.flush();
      if (bound > this.buf.length) this.buf = Buffer.allocUnsafe(bound);
    }
    const at = this.buf.subarray(this.used, this.used + bound);
    const c = compressInto(at, data, level);
    let n = c.n;
    if (this.key) {
      const sealed = sealBlob(this.key, this.size, at.subarray(0, n));
      if (this.used + sealed.length > this.buf.length) {
        this.flush();
        if (sealed.length > this.buf.length) this.buf = Buffer.allocUnsafe(sealed.length);
      }
      sealed.copy(this.buf, this.used);
      n = sealed.length;
    }
    this.used += n;
    this.size += n;
    this.ids.push(id);
    this.flags.push(c.flags);
    this.stored.push(n);
    this.raw.push(data.length);
    if (this.used >= WRITE_BLOCK) this.flush();
  }

  private write(b: Buffer): void {
    try {
      for (let at = 0; at < b.length; ) at += writeSync(this.fd, b, at, b.length - at);
    } catch (err) {
      // the file it was writing named (the errno kept: ENOSPC)
      const e = err as NodeJS.ErrnoException;
      throw Object.assign(new Error(`writing ${this.path}: ${e.message}`), { code: e.code });
    }
    this.hash.update(b);
  }

  private flush(): void {
    this.write(this.buf.subarray(0, this.used));
    this.used = 0;
  }

  /** Writes the header and trailer, makes the file durable and closes it (closed on a failure too). */
  finish(): AheadPack {
    try {
      return this.finishOpen();
    } finally {
      this.close();
    }
  }

  private finishOpen(): AheadPack {
    this.flush();
    const entries = this.ids.map((id, i) => ({
      id: id.toString('hex'),
      kind: KIND_DATA,
      flags: this.flags[i]!,
      stored: this.stored[i]!,
      raw: this.raw[i]!,
    }));
    const tail = packTail(entries, this.key ? { key: this.key, salt: this.salt! } : undefined);
    for (const t of tail) this.write(t);
    fsyncSync(this.fd);
    return {
      path: this.path,
      id: this.hash.digest('hex'),
      size: this.size + tail.reduce((n, t) => n + t.length, 0),
      ...(this.salt ? { salt: this.salt.toString('hex') } : {}),
      ids: new Uint8Array(Buffer.concat(this.ids)),
      flags: Uint8Array.from(this.flags),
      stored: Uint32Array.from(this.stored),
      raw: Uint32Array.from(this.raw),
    };
  }

  private closed = false;

  /** Closes the file (once). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/** The packs of one job: chunks added in order, each new one packed once, packs closed at the target. */
export class AheadPacker {
  private current: PackFile | undefined;
  private readonly done: AheadPack[] = [];
  private readonly seen = new Set<string>();
  private readonly files: string[] = [];
  private count = 0;
  private buf = Buffer.allocUnsafe(2 * WRITE_BLOCK);

  constructor(private readonly job: AheadPackJob) {}

  /** Packs chunk `id` (hex) unless this job packed it already. */
  add(id: string, data: Buffer): void {
    if (this.seen.has(id)) return;
    this.seen.add(id);
    if (!this.current) {
      const path = `${this.job.prefix}-${this.count++}`;
      this.current = new PackFile(path, this.buf, this.job.master); // (a file already there: EEXIST)
      this.files.push(path); // (only what this job created is removed by abort)
    }
    this.current.add(Buffer.from(id, 'hex'), data, this.job.level);
    if (this.current.size >= this.job.target) this.close();
  }

  private close(): void {
    const p = this.current;
    if (!p) return;
    this.done.push(p.finish()); // (closes its file, also when it fails)
    this.current = undefined;
  }

  /** Closes the last pack; the job's packs in order. */
  finish(): AheadPack[] {
    this.close();
    return this.done;
  }

  /** After a failure: every file of the job removed. */
  abort(): void {
    try {
      this.current?.close();
    } catch {
      // (closing is all that is left to do with it)
    }
    this.current = undefined;
    for (const f of this.files)
      try {
        unlinkSync(f);
      } catch {
        // not created, or gone
      }
  }
}
