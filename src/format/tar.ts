// Owns the tar container: encoding headers for regular-file entries (POSIX ustar, PAX records for long
// paths and huge sizes) and a strict streaming reader (ustar, GNU and v7 headers, PAX and GNU long
// names — at most one of each kind per entry, never both for one name, each PAX key once — checksums
// checked, truncation detected, data after the end-of-archive marker refused). docs/format.md §2.
// One reader serves verify, list and restore, so they always agree on what a bundle contains.

import { BundleDamagedError } from '../model/errors.js';

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
const MAX_OCTAL_11 = 0o77777777777;
/** Largest PAX / GNU long-name body we accept (paths are capped at 4 KiB by the layout anyway). */
const MAX_META_BODY = 1024 * 1024;

export const padding = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK;

function writeOctal(buf: Buffer, offset: number, width: number, value: number): void {
  buf.write(`${value.toString(8).padStart(width - 1, '0')}\0`, offset, width, 'ascii');
}

function checksum(block: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : block[i]!;
  return sum;
}

function ustarBlock(name: string, size: number, mtimeSec: number, type: string): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, 'utf8');
  writeOctal(b, 100, 8, 0o600);
  writeOctal(b, 108, 8, 0);
  writeOctal(b, 116, 8, 0);
  writeOctal(b, 124, 12, size > MAX_OCTAL_11 ? 0 : size);
  writeOctal(b, 136, 12, Math.max(0, Math.min(mtimeSec, MAX_OCTAL_11)));
  b.write(type, 156, 1, 'ascii');
  b.write('ustar\0', 257, 6, 'ascii');
  b.write('00', 263, 2, 'ascii');
  b.write(`${checksum(b).toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return b;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len)
    len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

/**
 * The header bytes for one regular file: a 512-byte ustar block, preceded by a PAX extended header
 * when the path does not fit the 100-byte name field or the size exceeds 8 GiB.
 */
export function encodeFileHeader(path: string, size: number, mtimeSec: number): Buffer {
  const records: string[] = [];
  if (Buffer.byteLength(path) > 100) records.push(paxRecord('path', path));
  if (size > MAX_OCTAL_11) records.push(paxRecord('size', String(size)));
  const main = ustarBlock(
    records.length && Buffer.byteLength(path) > 100 ? truncateUtf8(path, 100) : path,
    size,
    mtimeSec,
    '0',
  );
  if (records.length === 0) return main;
  const pax = Buffer.from(records.join(''), 'utf8');
  const paxHeader = ustarBlock(
    `PaxHeader/${truncateUtf8(path.split('/').pop() ?? 'x', 80)}`,
    pax.length,
    mtimeSec,
    'x',
  );
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), main]);
}

function truncateUtf8(s: string, maxBytes: number): string {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= maxBytes) return s;
  let end = maxBytes;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--; // do not split a multi-byte character
  return b.subarray(0, end).toString('utf8');
}

/** Two zero blocks: the end-of-archive marker. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

// ---------------------------------------------------------------------------------------------------
// Reader

/** Tar type flags as read: '0' regular, '1' hardlink, '2' symlink, '3'/'4' devices, '5' dir, '6' fifo. */
export interface TarEntry {
  path: string;
  size: number;
  /** The raw type flag character; a NUL flag (old-style regular file) is reported as '0'. */
  type: string;
  linkpath: string;
  /** The entry's data, in order. Unread data is skipped when the next entry is requested. */
  body(): AsyncGenerator<Buffer, void, undefined>;
}

class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  private done = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  private async fill(): Promise<boolean> {
    while (!this.done) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return false;
      }
      if (r.value.length > 0) {
        this.buf = r.value;
        this.off = 0;
        return true;
      }
    }
    return false;
  }

  /** Exactly n bytes, or null at a clean end of stream; throws when the stream ends inside them. */
  async readExact(n: number): Promise<Buffer | null> {
    if (this.off >= this.buf.length && !(await this.fill())) return null;
    if (this.buf.length - this.off >= n) {
      const out = this.buf.subarray(this.off, this.off + n);
      this.off += n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let have = 0;
    while (have < n) {
      if (this.off >= this.buf.length && !(await this.fill())) {
        throw new BundleDamagedError('truncated tar stream');
      }
      const take = Math.min(n - have, this.buf.length - this.off);
      this.buf.copy(out, have, this.off, this.off + take);
      this.off += take;
      have += take;
    }
    return out;
  }

  /** Up to `max` bytes as one slice (no copy); throws at end of stream. */
  async readSome(max: number): Promise<Buffer> {
    if (this.off >= this.buf.length && !(await this.fill()))
      throw new BundleDamagedError('truncated tar stream');
    const take = Math.min(max, this.buf.length - this.off);
    const out = this.buf.subarray(this.off, this.off + take);
    this.off += take;
    return out;
  }

  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) left -= (await this.readSome(left)).length;
  }

  /** True when every remaining byte of the stream is zero. */
  async restIsZero(): Promise<boolean> {
    for (;;) {
      if (this.off >= this.buf.length && !(await this.fill())) return true;
      const rest = this.buf.subarray(this.off);
      this.off = this.buf.length;
      for (let i = 0; i < rest.length; i++) if (rest[i] !== 0) return false;
    }
  }
}

function cString(buf: Buffer, start: number, end: number): Buffer {
  const field = buf.subarray(start, end);
  const nul = field.indexOf(0);
  return nul === -1 ? field : field.subarray(0, nul);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
function decodeUtf8(b: Buffer, what: string): string {
  try {
    return utf8.decode(b);
  } catch {
    throw new BundleDamagedError(`${what} is not valid UTF-8`);
  }
}

function parseNumeric(buf: Buffer, start: number, end: number, field: string): number {
  const f = buf.subarray(start, end);
  if (f[0]! & 0x80) {
    // base-256 (GNU): big-endian, positive values only
    if (f[0] !== 0x80) throw new BundleDamagedError(`tar header ${field} is negative or too large`);
    let v = 0;
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i]!;
    if (!Number.isSafeInteger(v)) throw new BundleDamagedError(`tar header ${field} too large`);
    return v;
  }
  const s = f
    .toString('latin1')
    .replace(/[\0 ]+$/g, '')
    .replace(/^[ ]+/, '');
  if (s === '') return 0; // the original left numeric fields as raw NULs
  if (!/^[0-7]+$/.test(s)) throw new BundleDamagedError(`tar header ${field} is not an octal number`);
  return Number.parseInt(s, 8);
}

function parsePax(body: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < body.length) {
    const sp = body.indexOf(0x20, pos);
    if (sp === -1) break;
    const digits = body.subarray(pos, sp).toString('latin1');
    const len = /^[0-9]{1,7}$/.test(digits) ? Number(digits) : Number.NaN;
    if (
      !Number.isInteger(len) ||
      len <= sp - pos ||
      pos + len > body.length ||
      body[pos + len - 1] !== 0x0a
    ) {
      throw new BundleDamagedError('malformed PAX extended header');
    }
    const rec = decodeUtf8(body.subarray(sp + 1, pos + len - 1), 'PAX record');
    const eq = rec.indexOf('=');
    if (eq <= 0) throw new BundleDamagedError('malformed PAX record');
    const key = rec.slice(0, eq);
    if (out.has(key)) throw new BundleDamagedError(`PAX record ${JSON.stringify(key)} given twice`);
    out.set(key, rec.slice(eq + 1));
    pos += len;
  }
  return out;
}

/**
 * Streams the entries of a tar archive. Throws BundleDamagedError on a bad checksum, a truncated
 * stream, a missing end-of-archive marker or non-zero data after it. Entry types other than regular
 * files are reported (not skipped) so callers can refuse them.
 */
export async function* readTar(
  source: AsyncIterable<Buffer>,
  /** Set once the end-of-archive marker is read: every entry came before it (the rest is checked after). */
  progress?: { ended: boolean },
): AsyncGenerator<TarEntry, void, undefined> {
  const reader = new ByteReader(source[Symbol.asyncIterator]());
  let pending = 0; // unread body bytes + padding of the previous entry
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax = new Map<string, string>();
  let havePax = false;

  for (;;) {
    if (pending > 0) {
      await reader.skip(pending);
      pending = 0;
    }
    const block = await reader.readExact(BLOCK);
    if (block === null) throw new BundleDamagedError('tar stream ends without an end-of-archive marker');
    if (block.equals(ZERO_BLOCK)) {
      if (longName !== undefined || longLink !== undefined || havePax)
        throw new BundleDamagedError('an extended header is not followed by the entry it describes');
      if (progress) progress.ended = true;
      if (!(await reader.restIsZero()))
        throw new BundleDamagedError('data after the tar end-of-archive marker');
      return;
    }
    const stored = parseNumeric(block, 148, 156, 'checksum');
    let signed = 0;
    for (let i = 0; i < BLOCK; i++) signed += i >= 148 && i < 156 ? 32 : (block[i]! << 24) >> 24;
    if (stored !== checksum(block) && stored !== signed)
      throw new BundleDamagedError('tar header checksum mismatch');

    const typeByte = block[156]!;
    const type = typeByte === 0 ? '0' : String.fromCharCode(typeByte);
    let size = parseNumeric(block, 124, 136, 'size');
    const magic = block.subarray(257, 263).toString('latin1');

    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      if (size > MAX_META_BODY) throw new BundleDamagedError(`tar extended header of ${size} bytes`);
      const body = size === 0 ? Buffer.alloc(0) : await reader.readExact(size);
      if (body === null) throw new BundleDamagedError('truncated tar stream');
      const copy = Buffer.from(body);
      await reader.skip(padding(size));
      const twice =
        (type === 'x' && havePax) ||
        (type === 'L' && longName !== undefined) ||
        (type === 'K' && longLink !== undefined);
      if (twice) throw new BundleDamagedError(`two extended headers of type '${type}' before one entry`);
      if (type === 'x') {
        pax = parsePax(copy);
        havePax = true;
      } else if (type === 'L') longName = decodeUtf8(cString(copy, 0, copy.length), 'GNU long name');
      else if (type === 'K') longLink = decodeUtf8(cString(copy, 0, copy.length), 'GNU long link');
      // 'g' (global PAX) carries nothing we act on
      continue;
    }

    let path = decodeUtf8(cString(block, 0, 100), 'tar entry name');
    if (magic === 'ustar\0') {
      const prefix = decodeUtf8(cString(block, 345, 500), 'tar entry prefix');
      if (prefix) path = `${prefix}/${path}`;
    }
    let linkpath = decodeUtf8(cString(block, 157, 257), 'tar link name');
    if (longName !== undefined) path = longName;
    if (longLink !== undefined) linkpath = longLink;
    if ((longName !== undefined && pax.has('path')) || (longLink !== undefined && pax.has('linkpath')))
      throw new BundleDamagedError('an entry named by both a GNU long name and a PAX record');
    const paxPath = pax.get('path');
    if (paxPath !== undefined) path = paxPath;
    const paxLink = pax.get('linkpath');
    if (paxLink !== undefined) linkpath = paxLink;
    const paxSize = pax.get('size');
    if (paxSize !== undefined) {
      if (!/^[0-9]+$/.test(paxSize)) throw new BundleDamagedError('PAX size is not a number');
      size = Number(paxSize);
      if (!Number.isSafeInteger(size)) throw new BundleDamagedError('PAX size too large');
    }
    longName = undefined;
    longLink = undefined;
    pax = new Map();
    havePax = false;

    // Links, directories and devices carry no data in practice; their size field still frames the stream.
    let remaining = size;
    pending = size + padding(size);
    const pad = padding(size);
    const entry: TarEntry = {
      path,
      size,
      type,
      linkpath,
      async *body() {
        while (remaining > 0) {
          const chunk = await reader.readSome(remaining);
          remaining -= chunk.length;
          pending = remaining + pad;
          yield chunk;
        }
      },
    };
    yield entry;
  }
}
