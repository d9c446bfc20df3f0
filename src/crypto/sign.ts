// Owns ed25519 signing keys on node:crypto: their text formats (a secret key file holding one
// `NEXO-SIGN-SECRET-KEY-1…` line among `#` comments; a one-line `nexo-sign-pub1…` public key, inline or
// in a file; PEM ed25519 keys as written by openssl), key ids, generation, signing and checking one
// message. Every unusable key (unreadable, corrupt, wrong type) is a KeyError naming what it got.
// docs/signatures.md is the prose version of this file and format/signature.ts.

import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { KeyError } from '../model/errors.js';
import { MAX_KEY_FILE_BYTES, readSmallFile, SmallFileProblem } from '../util/small-file.js';
import { bech32Decode, bech32Encode } from './age.js';

export const PUBLIC_KEY_HRP = 'nexo-sign-pub';
export const SECRET_KEY_HRP = 'nexo-sign-secret-key-';
export const PUBLIC_KEY_PREFIX = `${PUBLIC_KEY_HRP}1`;
const SECRET_KEY_PREFIX = `${SECRET_KEY_HRP}1`.toUpperCase();

/** DER prefixes of raw 32-byte ed25519 keys (RFC 8410). */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** A public key that signatures are checked against. */
export interface PublicSigningKey {
  /** `nexo-sign-pub1…` */
  publicKey: string;
  /** 16 hex characters identifying the key (shown by verify and list). */
  keyId: string;
  key: KeyObject;
  raw: Buffer;
}

/** A secret key that signs; carries its public half. */
export interface SigningKey extends PublicSigningKey {
  secret: KeyObject;
}

/** Key id: the first 16 hex characters of SHA-256 over a domain label and the raw public key. */
export function keyIdOf(raw: Buffer): string {
  return createHash('sha256').update('nexo-memory-snapshot/key-id\n').update(raw).digest('hex').slice(0, 16);
}

function publicOf(raw: Buffer): PublicSigningKey {
  const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
  return { publicKey: bech32Encode(PUBLIC_KEY_HRP, raw), keyId: keyIdOf(raw), key, raw };
}

const rawPublicOf = (k: KeyObject): Buffer =>
  (k.export({ format: 'der', type: 'spki' }) as Buffer).subarray(SPKI_PREFIX.length);

function signingKeyOf(secret: KeyObject): SigningKey {
  return { ...publicOf(rawPublicOf(createPublicKey(secret))), secret };
}

/** A new key pair: the secret key line, the public key string and the key id. */
export function generateSigningKey(): { secretKey: string; publicKey: string; keyId: string } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const seed = (privateKey.export({ format: 'der', type: 'pkcs8' }) as Buffer).subarray(PKCS8_PREFIX.length);
  const k = signingKeyOf(privateKey);
  return {
    secretKey: bech32Encode(SECRET_KEY_HRP, seed).toUpperCase(),
    publicKey: k.publicKey,
    keyId: k.keyId,
  };
}

/** The text of a secret key file as keygen writes it (mode 0600 is the caller's job). */
export function secretKeyFileText(k: { secretKey: string; publicKey: string; keyId: string }): string {
  return [
    '# nexo-memory signing key (ed25519). Keep it secret: whoever holds it can sign snapshots.',
    `# created: ${new Date().toISOString()}`,
    `# public key: ${k.publicKey}`,
    `# key id: ${k.keyId}`,
    k.secretKey,
    '',
  ].join('\n');
}

/** Names what a string that is not the expected kind of key looks like, for a precise error. */
function kindOf(s: string): string | undefined {
  const t = s.trim();
  if (/^AGE-SECRET-KEY-1/i.test(t)) return 'an age identity (for --decrypt-identity), not a signing key';
  if (/^age1/.test(t)) return 'an age recipient (for --encrypt), not a signing key';
  if (/^ssh-/.test(t)) return 'an SSH public key; only nexo-sign-pub1… or PEM ed25519 keys are accepted';
  return undefined;
}

const keyLines = (text: string): string[] =>
  text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

function decodeBech32(s: string, hrp: string, what: string, source: string): Buffer {
  let d: { hrp: string; data: Buffer };
  try {
    d = bech32Decode(s);
  } catch (err) {
    throw new KeyError(`${source}: corrupt ${what} (${(err as Error).message})`);
  }
  if (d.hrp !== hrp || d.data.length !== 32) throw new KeyError(`${source}: corrupt ${what}`);
  return d.data;
}

function fromPem(text: string, wantSecret: boolean, source: string): KeyObject {
  let k: KeyObject;
  try {
    k = wantSecret ? createPrivateKey(text) : createPublicKey(text);
  } catch (err) {
    throw new KeyError(
      `${source}: not a readable PEM ${wantSecret ? 'private' : 'public'} key (${(err as Error).message})`,
    );
  }
  if (k.asymmetricKeyType !== 'ed25519')
    throw new KeyError(`${source}: a ${k.asymmetricKeyType ?? 'unknown'} key; signatures need ed25519`);
  return k;
}

/** Parses a secret key (a NEXO-SIGN-SECRET-KEY-1… line, or a PEM ed25519 private key). */
export function parseSigningKey(text: string, source = 'signing key'): SigningKey {
  if (text.includes('-----BEGIN')) {
    if (/-----BEGIN PUBLIC KEY-----/.test(text))
      throw new KeyError(`${source}: a public key; signing needs the secret key`);
    return signingKeyOf(fromPem(text, true, source));
  }
  const lines = keyLines(text);
  if (lines.length === 0) throw new KeyError(`${source}: no key in it`);
  if (lines.length > 1) throw new KeyError(`${source}: more than one key line; a signing key file holds one`);
  const line = lines[0]!;
  const other = kindOf(line);
  if (other) throw new KeyError(`${source}: ${other}`);
  if (line.toLowerCase().startsWith(PUBLIC_KEY_PREFIX))
    throw new KeyError(`${source}: a public key; signing needs the secret key file keygen wrote`);
  if (!line.toUpperCase().startsWith(SECRET_KEY_PREFIX))
    throw new KeyError(`${source}: not a signing key (expected a ${SECRET_KEY_PREFIX}… line)`);
  const seed = decodeBech32(line, SECRET_KEY_HRP, 'secret key', source);
  const secret = createPrivateKey({
    key: Buffer.concat([PKCS8_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  return signingKeyOf(secret);
}

/** Parses one public key (`nexo-sign-pub1…`). */
export function parsePublicKey(s: string, source = 'public key'): PublicSigningKey {
  const t = s.trim();
  const other = kindOf(t);
  if (other) throw new KeyError(`${source}: ${other}`);
  if (t.toUpperCase().startsWith(SECRET_KEY_PREFIX))
    throw new KeyError(`${source}: a secret key; trust its public key instead (the .pub file keygen wrote)`);
  if (!t.toLowerCase().startsWith(PUBLIC_KEY_PREFIX))
    throw new KeyError(`${source}: not a public signing key (expected ${PUBLIC_KEY_PREFIX}…)`);
  return publicOf(decodeBech32(t, PUBLIC_KEY_HRP, 'public key', source));
}

/** A key file's text: a regular file of at most 64 KiB (util/small-file.ts), else KEY naming it. */
export function readKeyFile(path: string): string {
  try {
    return readSmallFile(path, MAX_KEY_FILE_BYTES, 'a key file').toString('utf8');
  } catch (err) {
    if (err instanceof SmallFileProblem)
      throw new KeyError(err.describe('key file', path), { cause: err.cause });
    throw new KeyError(`cannot read key file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Reads a secret key file. */
export function loadSigningKey(path: string): SigningKey {
  return parseSigningKey(readKeyFile(path), path);
}

/**
 * Trusted keys from `--trust` values or `trusted_keys` entries: each is a `nexo-sign-pub1…` string, or
 * the path of a file holding one or more of them (`#` comments allowed) or one PEM ed25519 public key.
 */
export function loadTrustedKeys(values: readonly string[]): PublicSigningKey[] {
  const out: PublicSigningKey[] = [];
  for (const v of values) {
    const inline = v.trim();
    // inline keys (a secret key passed inline is refused without echoing it as a file name)
    if (
      inline.toLowerCase().startsWith(PUBLIC_KEY_PREFIX) ||
      inline.toUpperCase().startsWith(SECRET_KEY_PREFIX) ||
      kindOf(inline)
    ) {
      out.push(parsePublicKey(inline, 'trusted key'));
      continue;
    }
    const text = readKeyFile(v);
    if (text.includes('-----BEGIN')) {
      if (/PRIVATE KEY-----/.test(text))
        throw new KeyError(`${v}: a private key; trust its public key instead`);
      out.push(publicOf(rawPublicOf(fromPem(text, false, v))));
      continue;
    }
    const lines = keyLines(text);
    if (lines.length === 0) throw new KeyError(`${v}: no public key in it`);
    for (const l of lines) out.push(parsePublicKey(l, v));
  }
  return out;
}

/** ed25519 signature of `message`. */
export function signMessage(key: SigningKey, message: Buffer): Buffer {
  return sign(null, message, key.secret);
}

/** Whether `signature` is a valid ed25519 signature of `message` by `key`. */
export function verifyMessage(key: PublicSigningKey, message: Buffer, signature: Buffer): boolean {
  if (signature.length !== 64) return false;
  try {
    return verify(null, message, key.key, signature);
  } catch {
    return false;
  }
}
