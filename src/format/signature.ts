// Owns checking a manifest's signature against a set of trusted keys: whether the bundle is signed,
// whether the signature verifies over the seal that the manifest's content recomputes to, and whether
// the key is trusted. Pure. The rules are in docs/signatures.md; verify and restore decide what a
// result means for them (a report entry, or a refusal before anything is written).

import { loadTrustedKeys, type PublicSigningKey, parsePublicKey, verifyMessage } from '../crypto/sign.js';
import { KeyError, SignatureError } from '../model/errors.js';
import { SIGNED_MANIFEST_VERSION } from './constants.js';
import type { ParsedManifest } from './manifest.js';
import { manifestSeal, signedMessage } from './seal.js';

/**
 * `trusted`: valid, by a trusted key. `valid`: valid, and no trusted keys were given (it proves only
 * that the key named in the manifest signed it). `untrusted`: valid, by a key not trusted. `invalid`:
 * the signature does not verify (or is malformed). `unsigned`: the bundle carries no signature.
 */
export type SignatureStatus = 'trusted' | 'valid' | 'untrusted' | 'invalid' | 'unsigned';

export interface SignatureCheck {
  status: SignatureStatus;
  /** The signing key's id as the manifest names it (checked against its public key). */
  key_id?: string;
  /** Why the signature is invalid or untrusted. */
  reason?: string;
}

/** Trust settings of a verify or restore: the keys, and whether a trusted signature is required. */
export interface TrustPolicy {
  keys: readonly PublicSigningKey[];
  /** Refuse (exit 2) unsigned, invalid and untrusted bundles. */
  required: boolean;
}

/** A TrustPolicy from key strings or files; `required` needs at least one key. */
export function trustPolicy(values: readonly string[] | undefined, required: boolean): TrustPolicy {
  const keys = loadTrustedKeys(values ?? []);
  if (required && keys.length === 0)
    throw new KeyError('a signature is required but no trusted key is configured (trusted_keys / --trust)');
  return { keys, required };
}

/** `nexo-sign-pub1` and 58 bech32 characters: 32 bytes and the checksum, lowercase. */
const PUBLIC_KEY_TEXT = /^nexo-sign-pub1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$/;
/** 64 bytes in standard base64 (RFC 4648 §4) with padding: 86 characters and `==`. */
const SIGNATURE_TEXT = /^[A-Za-z0-9+/]{86}==$/;

export function checkSignature(parsed: ParsedManifest, trusted: readonly PublicSigningKey[]): SignatureCheck {
  // The version fields agree (manifest.ts refuses them otherwise); only v3 carries a signature.
  return checkSealSignature(
    { manifest: parsed.manifest, raw: parsed.raw, signed: parsed.version === SIGNED_MANIFEST_VERSION },
    trusted,
  );
}

/**
 * The signature rules of any signed manifest format (bundles v3, repository snapshots v5): `signed`
 * says whether its version is a signed one; the signature covers the format and the manifest seal.
 */
export function checkSealSignature(
  parsed: {
    manifest: Pick<ParsedManifest['manifest'], 'signature' | 'manifest_seal' | 'bundle_format'>;
    raw: Record<string, unknown>;
    signed: boolean;
  },
  trusted: readonly PublicSigningKey[],
): SignatureCheck {
  const { manifest: m, raw } = parsed;
  if (!parsed.signed) return { status: 'unsigned' };
  const sig = m.signature;
  if (!sig) return { status: 'invalid', reason: 'a signed-format manifest without its signature' };
  const invalid = (reason: string): SignatureCheck => ({ status: 'invalid', key_id: sig.key_id, reason });
  // One spelling of each, so what a reader checks is what docs/format.md states.
  if (!PUBLIC_KEY_TEXT.test(sig.public_key))
    return invalid('signature.public_key is not a nexo-sign-pub1… key (lowercase bech32 of 32 bytes)');
  if (!SIGNATURE_TEXT.test(sig.value) || Buffer.from(sig.value, 'base64').toString('base64') !== sig.value)
    return invalid('signature.value is not the padded standard base64 of 64 bytes');
  let key: PublicSigningKey;
  try {
    key = parsePublicKey(sig.public_key, 'signature.public_key');
  } catch (err) {
    return invalid((err as Error).message);
  }
  if (key.keyId !== sig.key_id) return invalid('signature.key_id does not belong to signature.public_key');
  const seal = manifestSeal(raw);
  if (m.manifest_seal !== seal) return invalid('the manifest does not match its seal');
  const value = Buffer.from(sig.value, 'base64');
  if (!verifyMessage(key, signedMessage(m.bundle_format, seal), value))
    return invalid('the signature does not verify over the manifest seal');
  if (trusted.length === 0) return { status: 'valid', key_id: key.keyId };
  if (trusted.some((t) => t.raw.equals(key.raw))) return { status: 'trusted', key_id: key.keyId };
  return { status: 'untrusted', key_id: key.keyId, reason: `key ${key.keyId} is not among the trusted keys` };
}

/**
 * What a verify report lists under `not_checked` for a signature that is not refused: who signed is
 * unchecked when no trusted keys were given (`valid`) or when the signer is not among them and trust is
 * not required (`untrusted`). Bundles and repository snapshots report it alike.
 */
export function signatureTrustNotChecked(
  check: SignatureCheck,
): { check: 'signature_trust'; reason: string } | undefined {
  if (check.status === 'valid')
    return {
      check: 'signature_trust',
      reason: `signed by key ${check.key_id}; no trusted keys given (--trust), so who signed was not checked`,
    };
  if (check.status === 'untrusted')
    return {
      check: 'signature_trust',
      reason: `signed by key ${check.key_id}, which is not among the trusted keys (not required here)`,
    };
  return undefined;
}

/** The refusal a check means under `policy`, or undefined when the bundle may be used. */
export function signatureRefusal(check: SignatureCheck, policy: TrustPolicy): SignatureError | undefined {
  const details = { status: check.status, ...(check.key_id ? { key_id: check.key_id } : {}) };
  if (check.status === 'invalid')
    return new SignatureError('SIGNATURE_INVALID', check.reason ?? 'invalid signature', details);
  if (!policy.required) return undefined;
  if (check.status === 'unsigned')
    return new SignatureError(
      'SIGNATURE_MISSING',
      'the bundle is not signed and a signature is required (--trust, or signing.require_signature in the config)',
      details,
    );
  if (check.status === 'untrusted')
    return new SignatureError(
      'SIGNATURE_UNTRUSTED',
      check.reason ?? 'signed by a key that is not trusted',
      details,
    );
  return undefined;
}
