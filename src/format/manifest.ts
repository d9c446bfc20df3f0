// Owns manifest.json: its schema (lenient on unknown fields, strict on the ones we act on), the two
// seals (the original digest-list seal `bundle_sha256` and the whole-manifest `manifest_seal`), the
// optional signature over the seal (signed bundles are v3), the schema gate, and serialisation. Pure
// apart from signing with a key the caller loaded.

import { createHash } from 'node:crypto';
import { z } from 'zod';
import { type SigningKey, signMessage } from '../crypto/sign.js';
import { SchemaTooNewError } from '../model/errors.js';
import type { SchemaVersions } from '../model/types.js';
import {
  ARTIFACT_KINDS,
  type ArtifactKind,
  BUNDLE_FORMAT,
  BUNDLE_FORMAT_SIGNED,
  BUNDLE_FORMAT_V1,
  READABLE_SCHEMA,
  SIGNED_MANIFEST_VERSION,
} from './constants.js';
import type { LayoutVersion } from './layout.js';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters');
const u = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const schemaVersionsSchema = z.object({
  long_term: u,
  vector: u,
  concepts: u,
  compactions: u,
  manifest: u,
});

export const artifactSchema = z.object({
  path_in_bundle: z.string().min(1),
  kind: z.enum(ARTIFACT_KINDS),
  size_bytes: u,
  sha256: hex64,
});

export const gitInfoSchema = z.object({
  head_oid: z.string(),
  head_subject: z.string(),
  head_author: z.string(),
  head_ts_ms: z.number().int(),
  /** v2: `absent` (not a repository), `empty` (no commits), `present`. */
  repository: z.enum(['absent', 'empty', 'present']).optional(),
  /** v2: the branch HEAD points at (`refs/heads/main`); absent when detached or no repository. */
  head_ref: z.string().optional(),
  detached: z.boolean().optional(),
});

export const skippedSchema = z.object({ path: z.string(), reason: z.string() });

export const memdirInfoSchema = z.object({
  files: u,
  bytes: u,
  skipped: z.array(skippedSchema),
});

export const databaseInfoSchema = z.object({
  journal_mode: z.string(),
  page_size: u,
});

/** v3: who signed the seal. `value` is base64 of the 64-byte ed25519 signature of signedMessage(). */
export const signatureSchema = z.object({
  scheme: z.literal('ed25519'),
  key_id: z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex characters'),
  public_key: z.string().min(1),
  value: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64'),
});

export const notScannedSchema = z.object({
  artifact: z.string(),
  what: z.string(),
  reason: z.string(),
  count: u.optional(),
  bytes: u.optional(),
});

/** The original's four fields, plus what the port records (all optional for readers of v1 bundles). */
export const redactionReportSchema = z.looseObject({
  policy: z.string(),
  rules_applied: z.array(z.string()),
  matches_redacted: u,
  artifacts_touched: z.array(z.string()),
  ruleset: z.string().optional(),
  rule_counts: z.record(z.string(), u).optional(),
  excluded_rules: z.array(z.string()).optional(),
  allowlist_entries: u.optional(),
  /** `absent` (no history shipped), `unchanged` (scanned, nothing found), `rewritten` (secrets removed). */
  git_history: z.enum(['absent', 'unchanged', 'rewritten']).optional(),
  git: z
    .object({
      commits: u,
      data_scanned: u,
      data_redacted: u,
      messages_redacted: u,
      original_head_oid: z.string().optional(),
    })
    .optional(),
  sqlite: z
    .record(z.string(), z.object({ tables: u, values_scanned: u, values_redacted: u, unique_conflicts: u }))
    .optional(),
  not_scanned: z.array(notScannedSchema).optional(),
});

export const manifestSchema = z.object({
  manifest_version: u,
  bundle_format: z.string(),
  snapshot_id: z.string(),
  agent_id: z.string(),
  tenant: z.string(),
  label: z.string().optional(),
  created_at_ms: z.number().int(),
  created_by: z.string(),
  schema_versions: schemaVersionsSchema,
  git: gitInfoSchema,
  artifacts: z.array(artifactSchema),
  memdir: memdirInfoSchema.optional(),
  databases: z.record(z.string(), databaseInfoSchema).optional(),
  redactions: redactionReportSchema.optional(),
  encryption: z.object({ scheme: z.string(), recipients_fingerprint: z.array(z.string()) }).optional(),
  tool_versions: z.record(z.string(), z.string()),
  bundle_sha256: hex64,
  manifest_seal: hex64.optional(),
  signature: signatureSchema.optional(),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type Artifact = z.infer<typeof artifactSchema>;
export type GitInfo = z.infer<typeof gitInfoSchema>;
export type ManifestSignature = z.infer<typeof signatureSchema>;
export type SkippedEntry = z.infer<typeof skippedSchema>;
export type MemdirInfo = z.infer<typeof memdirInfoSchema>;
export type DatabaseInfo = z.infer<typeof databaseInfoSchema>;
export type RedactionReport = z.infer<typeof redactionReportSchema>;

export type { ArtifactKind };

/** SHA-256 over the concatenated lowercase hex digests, in manifest order (original §2.5). */
export function digestSeal(artifacts: ReadonlyArray<{ sha256: string }>): string {
  const h = createHash('sha256');
  for (const a of artifacts) h.update(a.sha256, 'utf8');
  return h.digest('hex');
}

/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace, arrays in order. Manifest
 * numbers are integers, so JSON.stringify renders them canonically.
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
 * a signed (v3) manifest, without its `signature` (which signs the seal). In v1/v2 a `signature` field
 * is ordinary content, covered by the seal and never honoured.
 */
export function manifestSeal(raw: Record<string, unknown>): string {
  const { manifest_seal: _ignored, ...rest } = raw;
  if (typeof raw.manifest_version === 'number' && raw.manifest_version >= SIGNED_MANIFEST_VERSION)
    delete rest.signature;
  return createHash('sha256').update(canonicalJson(rest), 'utf8').digest('hex');
}

/** Domain separation of the signed message: no other signature by the same key can be replayed as one. */
export const SIGNATURE_CONTEXT = 'nexo-memory-snapshot/manifest-signature/v1';

/** The bytes an ed25519 signature of a manifest covers: context, bundle format and seal, one per line. */
export function signedMessage(bundleFormat: string, seal: string): Buffer {
  return Buffer.from(`${SIGNATURE_CONTEXT}\n${bundleFormat}\n${seal}`, 'utf8');
}

export type ManifestDraft = Omit<Manifest, 'bundle_sha256' | 'manifest_seal' | 'signature'>;

/**
 * Seals a draft: fills `bundle_sha256` and `manifest_seal`; with a key, makes it a signed (v3) manifest
 * and adds the `signature` over its seal. Returns the manifest and its file bytes.
 */
export function sealManifest(draft: ManifestDraft, key?: SigningKey): { manifest: Manifest; bytes: Buffer } {
  const versioned: ManifestDraft = key
    ? {
        ...draft,
        manifest_version: SIGNED_MANIFEST_VERSION,
        bundle_format: BUNDLE_FORMAT_SIGNED,
        schema_versions: { ...draft.schema_versions, manifest: SIGNED_MANIFEST_VERSION },
      }
    : draft;
  const withDigest = { ...versioned, bundle_sha256: digestSeal(versioned.artifacts) } as Manifest;
  const seal = manifestSeal(withDigest);
  const manifest: Manifest = { ...withDigest, manifest_seal: seal };
  if (key) {
    manifest.signature = {
      scheme: 'ed25519',
      key_id: key.keyId,
      public_key: key.publicKey,
      value: signMessage(key, signedMessage(manifest.bundle_format, seal)).toString('base64'),
    };
  }
  return { manifest, bytes: Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8') };
}

export interface ParsedManifest {
  manifest: Manifest;
  raw: Record<string, unknown>;
  layout: LayoutVersion;
}

/** Parses manifest bytes. Throws a plain Error with a precise message when the shape is wrong. */
export function parseManifest(bytes: Buffer): ParsedManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new Error(`manifest.json is not valid UTF-8 JSON: ${(err as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error('manifest.json is not a JSON object');
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new Error(
      `manifest.json field ${first?.path.join('.') || '(root)'}: ${first?.message ?? 'invalid'}`,
    );
  }
  return { manifest: parsed.data, raw: raw as Record<string, unknown>, layout: layoutVersionOf(parsed.data) };
}

function layoutVersionOf(m: Manifest): LayoutVersion {
  // The original wrote manifest_version 1 and never checked it; anything that says v1 is read as v1.
  if (m.manifest_version <= 1 || m.bundle_format === BUNDLE_FORMAT_V1) return 1;
  return 2;
}

/**
 * The schema gate: refuses manifests from a newer writer. Checks `manifest_version`, `bundle_format`
 * and each `schema_versions` entry (the original checked only the latter).
 */
export function checkSchema(m: Manifest): void {
  if (m.manifest_version > SIGNED_MANIFEST_VERSION) {
    throw new SchemaTooNewError(m.manifest_version, SIGNED_MANIFEST_VERSION, 'manifest_version');
  }
  if (
    m.bundle_format !== BUNDLE_FORMAT &&
    m.bundle_format !== BUNDLE_FORMAT_V1 &&
    m.bundle_format !== BUNDLE_FORMAT_SIGNED
  ) {
    throw new SchemaTooNewError(
      m.schema_versions.manifest,
      READABLE_SCHEMA.manifest,
      `bundle_format ${m.bundle_format}`,
    );
  }
  for (const key of Object.keys(READABLE_SCHEMA) as Array<keyof SchemaVersions>) {
    if (m.schema_versions[key] > READABLE_SCHEMA[key]) {
      throw new SchemaTooNewError(m.schema_versions[key], READABLE_SCHEMA[key], `schema_versions.${key}`);
    }
  }
}
