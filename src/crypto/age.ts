// Owns the age v1 file format (age-encryption.org/v1) with X25519 recipients, built on node:crypto:
// bech32 keys (`age1…` recipients, `AGE-SECRET-KEY-1…` identities), identity files (comments and
// blank lines allowed), the header (stanzas, HMAC), and the STREAM payload (ChaCha20-Poly1305 over
// 64 KiB chunks) as streaming generators, opened by one synchronous opener that the decompression
// worker uses too. Interoperable with the `age` CLI both ways (tested).

import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { BundleDamagedError, EncryptionError } from '../model/errors.js';
import { MAX_KEY_FILE_BYTES, readSmallFile, SmallFileProblem } from '../util/small-file.js';

// ---------------------------------------------------------------------------------------------------
// bech32 (BIP 173), as age uses it

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const GEN = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GEN[i]!;
  }
  return chk;
}

const hrpExpand = (hrp: string): number[] => [
  ...[...hrp].map((c) => c.charCodeAt(0) >> 5),
  0,
  ...[...hrp].map((c) => c.charCodeAt(0) & 31),
];

function convertBits(data: Uint8Array | number[], from: number, to: number, pad: boolean): number[] {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  const max = (1 << to) - 1;
  for (const v of data) {
    acc = (acc << from) | v;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >> bits) & max);
    }
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & max);
  } else if (bits >= from || ((acc << (to - bits)) & max) !== 0) {
    throw new Error('invalid padding');
  }
  return out;
}

export function bech32Encode(hrp: string, data: Uint8Array): string {
  const words = convertBits(data, 8, 5, true);
  const chk = polymod([...hrpExpand(hrp), ...words, 0, 0, 0, 0, 0, 0]) ^ 1;
  const checksum = Array.from({ length: 6 }, (_, i) => (chk >>> (5 * (5 - i))) & 31);
  return `${hrp}1${[...words, ...checksum].map((w) => CHARSET[w]).join('')}`;
}

export function bech32Decode(s: string): { hrp: string; data: Buffer } {
  if (s !== s.toLowerCase() && s !== s.toUpperCase()) throw new Error('mixed case');
  const lower = s.toLowerCase();
  const sep = lower.lastIndexOf('1');
  if (sep < 1 || sep + 7 > lower.length) throw new Error('no separator');
  const hrp = lower.slice(0, sep);
  const words = [...lower.slice(sep + 1)].map((c) => {
    const v = CHARSET.indexOf(c);
    if (v === -1) throw new Error(`invalid character ${c}`);
    return v;
  });
  if (polymod([...hrpExpand(hrp), ...words]) !== 1) throw new Error('bad checksum');
  return { hrp, data: Buffer.from(convertBits(words.slice(0, -6), 5, 8, false)) };
}

// ---------------------------------------------------------------------------------------------------
// X25519 keys

const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

const privateKeyOf = (scalar: Buffer): KeyObject =>
  createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, scalar]), format: 'der', type: 'pkcs8' });
const publicKeyOf = (point: Buffer): KeyObject =>
  createPublicKey({ key: Buffer.concat([SPKI_PREFIX, point]), format: 'der', type: 'spki' });
const rawPublic = (k: KeyObject): Buffer =>
  (k.export({ format: 'der', type: 'spki' }) as Buffer).subarray(SPKI_PREFIX.length);

export interface Identity {
  /** The identity's own recipient string. */
  recipient: string;
  key: KeyObject;
  publicKey: Buffer;
}

/**
 * A recipient string. Errors never repeat the value (it lands in logs and JSON errors, and a user may
 * have pasted an identity, a secret key, by mistake): they say what kind of string it looks like.
 */
export function parseRecipient(s: string): Buffer {
  const t = s.trim();
  if (/^AGE-SECRET-KEY-/i.test(t))
    throw new EncryptionError(
      'recipient parse: that is an age identity (a secret key), not a recipient: give its public age1… recipient (age-keygen -y FILE prints it)',
    );
  if (/^(ssh-|ecdsa-|sk-ssh-|sk-ecdsa-)/.test(t))
    throw new EncryptionError(
      'recipient parse: SSH recipients are not supported (only X25519 age1… recipients)',
    );
  let d: { hrp: string; data: Buffer };
  try {
    d = bech32Decode(t);
  } catch (err) {
    throw new EncryptionError(
      `recipient parse: not an age recipient (${(err as Error).message}; ${t.length} characters, starting ${JSON.stringify(t.slice(0, 4))})`,
    );
  }
  if (d.hrp !== 'age' || d.data.length !== 32) {
    throw new EncryptionError(
      `recipient parse: unsupported recipient type ${JSON.stringify(s.slice(0, 12))}… (only X25519 age1… recipients)`,
    );
  }
  return d.data;
}

export function parseIdentity(s: string): Identity {
  let d: { hrp: string; data: Buffer };
  try {
    d = bech32Decode(s.trim());
  } catch (err) {
    throw new EncryptionError(
      `identity parse failed: not an AGE-SECRET-KEY-1… identity (${(err as Error).message})`,
    );
  }
  if (d.hrp !== 'age-secret-key-' || d.data.length !== 32)
    throw new EncryptionError('identity parse failed: unsupported identity type');
  const key = privateKeyOf(d.data);
  const publicKey = rawPublic(createPublicKey(key));
  return { recipient: bech32Encode('age', publicKey), key, publicKey };
}

/** Reads an identity file: one identity per line, `#` comments and blank lines ignored. */
export function loadIdentities(path: string): Identity[] {
  let text: string;
  try {
    text = readSmallFile(path, MAX_KEY_FILE_BYTES, 'an identity file').toString('utf8');
  } catch (err) {
    if (err instanceof SmallFileProblem)
      throw new EncryptionError(err.describe('identity file', path), { cause: err.cause });
    throw new EncryptionError(`cannot read identity file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const head = text.trimStart();
  if (
    head.startsWith('-----BEGIN OPENSSH PRIVATE KEY-----') ||
    head.startsWith('-----BEGIN RSA PRIVATE KEY-----')
  )
    throw new EncryptionError(
      `identity file ${path} holds an SSH private key: SSH identities are not supported`,
    );
  if (head.startsWith('age-encryption.org/v1') || head.startsWith('-----BEGIN AGE ENCRYPTED FILE-----'))
    throw new EncryptionError(
      `identity file ${path} is itself age-encrypted (passphrase-protected identities are not supported): decrypt it with \`age -d\` first`,
    );
  const ids: Identity[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const l = raw.trim();
    if (l === '' || l.startsWith('#')) continue;
    try {
      ids.push(parseIdentity(l));
    } catch (err) {
      throw new EncryptionError(`${(err as Error).message} (${path}, line ${i + 1})`, { cause: err });
    }
  }
  if (ids.length === 0) throw new EncryptionError(`no identities in ${path}`);
  return ids;
}

export function generateIdentity(): { identity: string; recipient: string } {
  const { privateKey } = generateKeyPairSync('x25519');
  const scalar = (privateKey.export({ format: 'der', type: 'pkcs8' }) as Buffer).subarray(
    PKCS8_PREFIX.length,
  );
  return {
    identity: bech32Encode('age-secret-key-', scalar).toUpperCase(),
    recipient: bech32Encode('age', rawPublic(createPublicKey(privateKey))),
  };
}

/**
 * A short, non-secret fingerprint of a recipient for the manifest: HMAC-SHA-256 keyed with
 * `nexo-memory-snapshot/recipient` over the raw 32-byte X25519 key, first 16 hex characters.
 */
export function recipientFingerprint(recipient: string): string {
  return createHmac('sha256', 'nexo-memory-snapshot/recipient')
    .update(parseRecipient(recipient))
    .digest('hex')
    .slice(0, 16);
}

// ---------------------------------------------------------------------------------------------------
// Header

const INTRO = 'age-encryption.org/v1\n';
const X25519_INFO = 'age-encryption.org/v1/X25519';
const b64 = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');
const hkdf = (ikm: Buffer, salt: Buffer, info: string): Buffer =>
  Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));

function aead(key: Buffer, nonce: Buffer, data: Buffer, decrypt: boolean): Buffer {
  if (!decrypt) {
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    return Buffer.concat([c.update(data), c.final(), c.getAuthTag()]);
  }
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  d.setAuthTag(data.subarray(data.length - 16));
  return Buffer.concat([d.update(data.subarray(0, data.length - 16)), d.final()]);
}

/** Stanza body: base64 without padding in 64-column lines; the last line is shorter (empty if need be). */
function wrapBody(body: Buffer): string {
  const s = b64(body);
  const lines: string[] = [];
  for (let i = 0; i < s.length; i += 64) lines.push(s.slice(i, i + 64));
  if (s.length % 64 === 0) lines.push('');
  return `${lines.join('\n')}\n`;
}

/** Builds the header for `recipients`; returns it with the file key. */
export function encryptHeader(recipients: readonly string[]): { header: Buffer; fileKey: Buffer } {
  if (recipients.length === 0) throw new EncryptionError('no recipients');
  const fileKey = randomBytes(16);
  let text = INTRO;
  for (const r of recipients) {
    const pub = parseRecipient(r);
    const { privateKey, publicKey } = generateKeyPairSync('x25519');
    const share = rawPublic(publicKey);
    const shared = diffieHellman({ privateKey, publicKey: publicKeyOf(pub) });
    const wrapKey = hkdf(shared, Buffer.concat([share, pub]), X25519_INFO);
    text += `-> X25519 ${b64(share)}\n${wrapBody(aead(wrapKey, Buffer.alloc(12), fileKey, false))}`;
  }
  text += '---';
  const mac = createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
    .update(text)
    .digest();
  return { header: Buffer.from(`${text} ${b64(mac)}\n`), fileKey };
}

export interface ParsedHeader {
  stanzas: Array<{ type: string; args: string[]; body: Buffer }>;
  /** Header bytes up to and including `---` (what the MAC covers). */
  macInput: Buffer;
  mac: Buffer;
  /** Where the payload starts in the file. */
  length: number;
}

const B64_LINE = /^[A-Za-z0-9+/]*$/;

/** Parses an age header from the first bytes of a file. Throws EncryptionError when it is not one. */
export function parseHeader(head: Buffer): ParsedHeader {
  const text = head.toString('latin1');
  if (!text.startsWith(INTRO)) throw new EncryptionError('not an age v1 file (bad intro line)');
  let pos = INTRO.length;
  const stanzas: ParsedHeader['stanzas'] = [];
  const line = (): string => {
    const end = text.indexOf('\n', pos);
    if (end === -1) throw new EncryptionError('truncated age header');
    const l = text.slice(pos, end);
    pos = end + 1;
    return l;
  };
  for (;;) {
    const start = pos;
    const l = line();
    if (l.startsWith('--- ')) {
      const mac = Buffer.from(l.slice(4), 'base64');
      if (mac.length !== 32) throw new EncryptionError('malformed age header MAC');
      return { stanzas, macInput: head.subarray(0, start + 3), mac, length: pos };
    }
    if (!l.startsWith('-> ')) throw new EncryptionError('malformed age header');
    const [type, ...args] = l.slice(3).split(' ');
    const parts: string[] = [];
    for (;;) {
      const b = line();
      if (!B64_LINE.test(b) || b.length > 64) throw new EncryptionError('malformed age stanza body');
      parts.push(b);
      if (b.length < 64) break;
    }
    stanzas.push({ type: type ?? '', args, body: Buffer.from(parts.join(''), 'base64') });
  }
}

/** Unwraps the file key with one of `identities` and checks the header MAC. */
export function unwrapFileKey(h: ParsedHeader, identities: readonly Identity[]): Buffer {
  if (h.stanzas.some((s) => s.type === 'scrypt'))
    throw new EncryptionError('passphrase-encrypted age files are not supported');
  for (const s of h.stanzas) {
    if (s.type !== 'X25519' || s.args.length !== 1 || s.body.length !== 32) continue;
    const share = Buffer.from(s.args[0]!, 'base64');
    if (share.length !== 32) continue;
    for (const id of identities) {
      let fileKey: Buffer;
      try {
        const shared = diffieHellman({ privateKey: id.key, publicKey: publicKeyOf(share) });
        fileKey = aead(
          hkdf(shared, Buffer.concat([share, id.publicKey]), X25519_INFO),
          Buffer.alloc(12),
          s.body,
          true,
        );
      } catch {
        continue;
      }
      const mac = createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
        .update(h.macInput)
        .digest();
      if (!timingSafeEqual(mac, h.mac))
        throw new EncryptionError('age header MAC mismatch (tampered header)');
      return fileKey;
    }
  }
  throw new EncryptionError("no identity matched any of the file's recipients");
}

// ---------------------------------------------------------------------------------------------------
// STREAM payload

export const CHUNK = 64 * 1024;
const TAG = 16;

export const payloadKey = (fileKey: Buffer, nonce: Buffer): Buffer => hkdf(fileKey, nonce, 'payload');

function chunkNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6);
  n[11] = last ? 1 : 0;
  return n;
}

/** Seals one STREAM chunk into `out` at `at` (ciphertext then tag); returns the bytes written. */
function sealChunk(
  key: Buffer,
  counter: number,
  last: boolean,
  data: Buffer,
  out: Buffer,
  at: number,
): number {
  const c = createCipheriv('chacha20-poly1305', key, chunkNonce(counter, last), { authTagLength: TAG });
  const body = c.update(data);
  body.copy(out, at);
  c.final();
  c.getAuthTag().copy(out, at + body.length);
  return body.length + TAG;
}

/**
 * Encrypts a byte stream to the complete age file (header, nonce, STREAM chunks). Chunks are sealed
 * straight from the input where they lie whole in one input buffer (only chunks that straddle two
 * inputs are gathered), and everything sealed from one input leaves as one buffer.
 */
export async function* ageEncrypt(
  source: AsyncIterable<Buffer>,
  recipients: readonly string[],
): AsyncGenerator<Buffer> {
  const { header, fileKey } = encryptHeader(recipients);
  const nonce = randomBytes(16);
  const key = payloadKey(fileKey, nonce);
  yield Buffer.concat([header, nonce]);
  // A full chunk is held back until more input arrives: only the end of the input tells the last one.
  const held = Buffer.allocUnsafe(CHUNK);
  let fill = 0;
  let counter = 0;
  for await (const chunk of source) {
    if (chunk.length === 0) continue;
    const out = Buffer.allocUnsafe((Math.floor((fill + chunk.length) / CHUNK) + 1) * (CHUNK + TAG));
    let used = 0;
    let off = 0;
    while (off < chunk.length) {
      if (fill === CHUNK) {
        used += sealChunk(key, counter++, false, held, out, used);
        fill = 0;
      }
      if (fill === 0 && chunk.length - off > CHUNK) {
        // a whole chunk, and more input after it: seal it in place
        used += sealChunk(key, counter++, false, chunk.subarray(off, off + CHUNK), out, used);
        off += CHUNK;
        continue;
      }
      const n = Math.min(CHUNK - fill, chunk.length - off);
      chunk.copy(held, fill, off, off + n);
      fill += n;
      off += n;
    }
    if (used > 0) yield out.subarray(0, used);
  }
  const out = Buffer.allocUnsafe(fill + TAG);
  sealChunk(key, counter, true, held.subarray(0, fill), out, 0);
  yield out;
}

/**
 * Opens one sealed STREAM chunk (ciphertext, then its 16-byte tag) with the payload key: the chunk's
 * plaintext, or BundleDamagedError when it fails authentication (tampered, truncated, out of order, or
 * the last-chunk flag does not match).
 */
export function openChunk(key: Buffer, counter: number, last: boolean, sealed: Buffer): Buffer {
  try {
    const d = createDecipheriv('chacha20-poly1305', key, chunkNonce(counter, last), { authTagLength: TAG });
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    const plain = d.update(sealed.subarray(0, sealed.length - TAG));
    d.final();
    return plain;
  } catch {
    throw new BundleDamagedError('age payload failed authentication (tampered or truncated)');
  }
}

const SEALED = CHUNK + TAG;

/**
 * Opens a STREAM payload (the bytes after header and nonce) pushed in pieces of any size, synchronously:
 * each chunk is authenticated before a byte of it is returned, and a full chunk is held until more input
 * shows that it is not the last one. Chunks that lie whole in one input are opened where they lie; only
 * chunks that straddle two inputs are gathered (into a buffer of its own: the inputs may be reused). Both
 * readers use it: ageDecryptPayload and the decompression worker (format/zstd-worker-main.ts).
 */
export class PayloadOpener {
  private readonly held = Buffer.allocUnsafe(SEALED);
  private fill = 0;
  private counter = 0;

  constructor(private readonly key: Buffer) {}

  /** The plaintext of every chunk in `data` that more input follows; the rest is kept for later. */
  *push(data: Buffer): Generator<Buffer, void, undefined> {
    let off = 0;
    while (off < data.length) {
      if (this.fill === SEALED) {
        const plain = this.open(this.held, false);
        this.fill = 0;
        yield plain;
      }
      if (this.fill === 0 && data.length - off > SEALED) {
        yield this.open(data.subarray(off, off + SEALED), false);
        off += SEALED;
        continue;
      }
      const n = Math.min(SEALED - this.fill, data.length - off);
      data.copy(this.held, this.fill, off, off + n);
      this.fill += n;
      off += n;
    }
  }

  /** The plaintext of the last chunk, once the input has ended; BundleDamagedError when truncated. */
  end(): Buffer {
    if (this.fill < TAG) throw new BundleDamagedError('age payload truncated');
    return this.open(this.held.subarray(0, this.fill), true);
  }

  private open(sealed: Buffer, last: boolean): Buffer {
    return openChunk(this.key, this.counter++, last, sealed);
  }
}

/**
 * Decrypts a STREAM payload (the bytes after header and nonce) chunk by chunk; throws BundleDamagedError
 * as soon as a chunk fails authentication or the stream is truncated, before yielding that chunk.
 */
export async function* ageDecryptPayload(
  payload: AsyncIterable<Buffer>,
  key: Buffer,
): AsyncGenerator<Buffer> {
  const opener = new PayloadOpener(key);
  for await (const chunk of payload) yield* opener.push(chunk);
  yield opener.end();
}

/** The age header of the file at `path`, or undefined when the file is not an age file. */
export async function readAgeHeader(path: string): Promise<ParsedHeader | undefined> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(1024 * 1024);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const bytes = head.subarray(0, bytesRead);
    if (!bytes.subarray(0, INTRO.length).equals(Buffer.from(INTRO))) return undefined;
    return parseHeader(bytes);
  } finally {
    await fh.close();
  }
}

/** Where the STREAM payload of an age file starts and the key that opens it. */
export function openPayload(
  path: string,
  h: ParsedHeader,
  identities: readonly Identity[],
): { key: Buffer; offset: number } {
  const fileKey = unwrapFileKey(h, identities);
  const fd = openSync(path, 'r');
  try {
    const nonce = Buffer.alloc(16);
    if (readSync(fd, nonce, 0, 16, h.length) !== 16)
      throw new BundleDamagedError('age file truncated after its header');
    return { key: payloadKey(fileKey, nonce), offset: h.length + 16 };
  } finally {
    closeSync(fd);
  }
}
