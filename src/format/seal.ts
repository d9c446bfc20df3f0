// Owns the seals of a manifest and what a signature covers: canonical JSON (docs/format.md §5), the
// digest-list seal `bundle_sha256`, the whole-manifest `manifest_seal` and the signed message. Pure;
// apart from the manifest's schema (manifest.ts), so checking a seal or a signature loads no schema
// library.

import { createHash } from 'node:crypto';
import { SIGNED_MANIFEST_VERSION } from './constants.js';

/** SHA-256 over the concatenated lowercase hex digests, in manifest order (original §2.5). */
export function digestSeal(artifacts: ReadonlyArray<{ sha256: string }>): string {
  // one update over the joined digests: the same bytes as one update per digest, without a call each
  return createHash('sha256')
    .update(artifacts.map((a) => a.sha256).join(''), 'utf8')
    .digest('hex');
}

/**
 * Canonical JSON (docs/format.md §5): object members sorted by name in UTF-16 code unit order, no
 * whitespace, arrays in order, strings as JSON.stringify writes them. Manifest numbers are integers
 * within ±(2^53 − 1) (parseManifest refuses others), so JSON.stringify renders them canonically, and
 * nesting is at most 64 deep, so the recursion is bounded.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

/**
 * SHA-256 of the canonical JSON of the raw manifest object without its `manifest_seal` field, and, in
 * a signed (v3) manifest, without its `signature` (which signs the seal). With `artifacts`, the
 * canonical JSON of each element of `raw.artifacts` (UTF-8), in order, is taken from there. A v1 or v2 manifest carrying a
 * `signature` is refused by parseManifest().
 */
export function manifestSeal(raw: Record<string, unknown>, artifacts?: readonly Buffer[]): string {
  const { manifest_seal: _ignored, ...rest } = raw;
  if (typeof raw.manifest_version === 'number' && raw.manifest_version >= SIGNED_MANIFEST_VERSION)
    delete rest.signature;
  const h = createHash('sha256');
  if (!artifacts) return h.update(canonicalJson(rest), 'utf8').digest('hex');
  // The same canonical JSON, hashed in parts: `artifacts` holds the canonical JSON of each element of
  // raw.artifacts (computed once by a caller that parses many manifests sharing most of their entries).
  const keys = Object.keys(rest)
    .filter((k) => rest[k] !== undefined)
    .sort();
  h.update('{');
  keys.forEach((k, i) => {
    h.update(`${i > 0 ? ',' : ''}${JSON.stringify(k)}:`, 'utf8');
    if (k === 'artifacts') {
      const parts: Buffer[] = [OPEN];
      artifacts.forEach((a, j) => {
        if (j > 0) parts.push(COMMA);
        parts.push(a);
      });
      parts.push(CLOSE);
      h.update(Buffer.concat(parts));
    } else h.update(canonicalJson(rest[k]), 'utf8');
  });
  return h.update('}').digest('hex');
}

const OPEN = Buffer.from('[');
const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']');

/** Domain separation of the signed message: no other signature by the same key can be replayed as one. */
export const SIGNATURE_CONTEXT = 'nexo-memory-snapshot/manifest-signature/v1';

/** The bytes an ed25519 signature of a manifest covers: context, bundle format and seal, one per line. */
export function signedMessage(bundleFormat: string, seal: string): Buffer {
  return Buffer.from(`${SIGNATURE_CONTEXT}\n${bundleFormat}\n${seal}`, 'utf8');
}
