// Owns the encryption of an encrypted repository (docs/repository.md §7): the master key wrapped to age
// recipients in a key file, and ChaCha20-Poly1305 under HKDF-derived keys for pack blobs, pack headers,
// index and snapshot files. A plaintext repository has no key and these functions are not called.

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import {
  ageDecryptPayload,
  ageEncrypt,
  type Identity,
  parseHeader,
  payloadKey,
  unwrapFileKey,
} from '../crypto/age.js';
import { BundleDamagedError, EncryptionError } from '../model/errors.js';

export const TAG = 16;
export const SALT = 16;
const PACK_INFO = 'nexo-memory pack';
const FILE_INFO = 'nexo-memory file';
const HEADER_NONCE = Buffer.alloc(12, 0xff);

export interface RepoKey {
  master: Buffer;
}

const derive = (master: Buffer, salt: Buffer, info: string): Buffer =>
  Buffer.from(hkdfSync('sha256', master, salt, info, 32));

function seal(key: Buffer, nonce: Buffer, data: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
  return Buffer.concat([c.update(data), c.final(), c.getAuthTag()]);
}

function unseal(key: Buffer, nonce: Buffer, data: Buffer, what: string): Buffer {
  if (data.length < TAG) throw new BundleDamagedError(`${what}: too short to be encrypted data`);
  try {
    const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
    d.setAuthTag(data.subarray(data.length - TAG));
    return Buffer.concat([d.update(data.subarray(0, data.length - TAG)), d.final()]);
  } catch {
    throw new BundleDamagedError(`${what}: failed authentication (tampered, damaged, or another key)`);
  }
}

/** A blob's nonce: its offset in the pack, big-endian in 12 bytes (unique within the pack's key). */
const blobNonce = (offset: number): Buffer => {
  const n = Buffer.alloc(12);
  n.writeUIntBE(offset, 6, 6);
  return n;
};

/** The key of one pack, from its salt. */
export const packKey = (k: RepoKey, salt: Buffer): Buffer => derive(k.master, salt, PACK_INFO);
export const sealBlob = (packKey: Buffer, offset: number, data: Buffer): Buffer =>
  seal(packKey, blobNonce(offset), data);
export const openBlob = (packKey: Buffer, offset: number, data: Buffer, what: string): Buffer =>
  unseal(packKey, blobNonce(offset), data, what);
export const sealPackHeader = (packKey: Buffer, data: Buffer): Buffer => seal(packKey, HEADER_NONCE, data);
export const openPackHeader = (packKey: Buffer, data: Buffer, what: string): Buffer =>
  unseal(packKey, HEADER_NONCE, data, what);

/** An index or snapshot file: `salt | ChaCha20-Poly1305(key(salt), nonce 0, data)`. */
export function sealFile(k: RepoKey, data: Buffer): Buffer {
  const salt = randomBytes(SALT);
  return Buffer.concat([salt, seal(derive(k.master, salt, FILE_INFO), Buffer.alloc(12), data)]);
}

export function openFile(k: RepoKey, data: Buffer, what: string): Buffer {
  if (data.length < SALT + TAG) throw new BundleDamagedError(`${what}: too short to be an encrypted file`);
  const salt = data.subarray(0, SALT);
  return unseal(derive(k.master, salt, FILE_INFO), Buffer.alloc(12), data.subarray(SALT), what);
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b;
}

async function collect(src: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of src) parts.push(Buffer.from(p));
  return Buffer.concat(parts);
}

/** A new master key and its key file: an age file (to every recipient) of `{"master_key": base64}`. */
export async function newKeyFile(recipients: readonly string[]): Promise<{ key: RepoKey; bytes: Buffer }> {
  const master = randomBytes(32);
  const json = Buffer.from(JSON.stringify({ master_key: master.toString('base64') }));
  return { key: { master }, bytes: await collect(ageEncrypt(once(json), recipients)) };
}

/** Opens a key file with the identities; EncryptionError when none of them is a recipient. */
export async function openKeyFile(bytes: Buffer, identities: readonly Identity[]): Promise<RepoKey> {
  const h = parseHeader(bytes);
  const fileKey = unwrapFileKey(h, identities); // throws EncryptionError when no identity matches
  const nonce = bytes.subarray(h.length, h.length + 16);
  if (nonce.length !== 16) throw new BundleDamagedError('repository key file truncated');
  const json = await collect(
    ageDecryptPayload(once(bytes.subarray(h.length + 16)), payloadKey(fileKey, nonce)),
  );
  let parsed: unknown;
  try {
    parsed = JSON.parse(json.toString('utf8'));
  } catch {
    throw new BundleDamagedError('repository key file does not hold JSON');
  }
  const b64 = (parsed as { master_key?: unknown }).master_key;
  const master = typeof b64 === 'string' ? Buffer.from(b64, 'base64') : Buffer.alloc(0);
  if (master.length !== 32) throw new EncryptionError('repository key file holds no 32-byte master key');
  return { master };
}
