// Owns manifest.json: its schema (lenient on unknown fields, strict on the ones we act on), reading it
// (strict JSON, the version gate and the agreement of the three version fields, the fields each
// version may carry), sealing a draft with the two seals of seal.ts (the original digest-list seal
// `bundle_sha256` and the whole-manifest `manifest_seal`, re-exported here) and the optional signature
// over the seal (signed bundles are v3), and serialisation. Pure apart from signing with a key the
// caller loaded.

import { type SigningKey, signMessage } from '../crypto/sign.js';
import { BundleDamagedError, SchemaTooNewError } from '../model/errors.js';
import { HEX64, isCount } from '../model/meta-check.js';
import type { SchemaVersions } from '../model/types.js';
import { type z, zod } from '../util/zod.js';
import {
  ARTIFACT_KINDS,
  type ArtifactKind,
  BUNDLE_FORMAT,
  BUNDLE_FORMAT_SIGNED,
  BUNDLE_FORMAT_V1,
  GIT_BUNDLE_PATH,
  READABLE_SCHEMA,
  SIGNED_MANIFEST_VERSION,
} from './constants.js';
import { parseStrictJson } from './json.js';
import type { LayoutVersion } from './layout.js';
import { digestSeal, manifestSeal, signedMessage } from './seal.js';

export { canonicalJson, digestSeal, manifestSeal, SIGNATURE_CONTEXT, signedMessage } from './seal.js';

/**
 * The manifest's schemas, built on first use (manifestSchemas): building them loads zod (util/zod.ts) and
 * costs ~20 ms more, which a command that only writes manifests (a bundle snapshot) does not pay.
 */
function buildSchemas() {
  const z = zod();
  const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters');
  const u = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

  const schemaVersionsSchema = z.object({
    long_term: u,
    vector: u,
    concepts: u,
    compactions: u,
    manifest: u,
  });

  const artifactSchema = z.object({
    path_in_bundle: z.string().min(1),
    kind: z.enum(ARTIFACT_KINDS),
    size_bytes: u,
    sha256: hex64,
  });

  const gitInfoSchema = z.object({
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

  const skippedSchema = z.object({ path: z.string(), reason: z.string() });

  const memdirInfoSchema = z.object({
    files: u,
    bytes: u,
    skipped: z.array(skippedSchema),
  });

  const databaseInfoSchema = z.object({
    journal_mode: z.string(),
    page_size: u,
  });

  /** v3: who signed the seal. `value` is base64 of the 64-byte ed25519 signature of signedMessage(). */
  const signatureSchema = z.object({
    scheme: z.literal('ed25519'),
    key_id: z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex characters'),
    public_key: z.string().min(1),
    value: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be base64'),
  });

  const notScannedSchema = z.object({
    artifact: z.string(),
    what: z.string(),
    reason: z.string(),
    count: u.optional(),
    bytes: u.optional(),
  });

  /** The original's four fields, plus what the port records (all optional for readers of v1 bundles). */
  const redactionReportSchema = z.looseObject({
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
        /** Refs whose target, once annotated tags are peeled, is a blob or a tree: scanned and kept. */
        object_refs: u.optional(),
        original_head_oid: z.string().optional(),
      })
      .optional(),
    sqlite: z
      .record(z.string(), z.object({ tables: u, values_scanned: u, values_redacted: u, unique_conflicts: u }))
      .optional(),
    not_scanned: z.array(notScannedSchema).optional(),
  });

  const manifestSchema = z.object({
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
  return {
    schemaVersionsSchema,
    artifactSchema,
    gitInfoSchema,
    skippedSchema,
    memdirInfoSchema,
    databaseInfoSchema,
    signatureSchema,
    notScannedSchema,
    redactionReportSchema,
    manifestSchema,
  };
}

export type ManifestSchemas = ReturnType<typeof buildSchemas>;
let schemas: ManifestSchemas | undefined;

/** The manifest's zod schemas (built once per process, on first call). */
export const manifestSchemas = (): ManifestSchemas => (schemas ??= buildSchemas());

export type Manifest = z.infer<ManifestSchemas['manifestSchema']>;
export type Artifact = z.infer<ManifestSchemas['artifactSchema']>;
export type GitInfo = z.infer<ManifestSchemas['gitInfoSchema']>;
export type ManifestSignature = z.infer<ManifestSchemas['signatureSchema']>;
export type SkippedEntry = z.infer<ManifestSchemas['skippedSchema']>;
export type MemdirInfo = z.infer<ManifestSchemas['memdirInfoSchema']>;
export type DatabaseInfo = z.infer<ManifestSchemas['databaseInfoSchema']>;
export type RedactionReport = z.infer<ManifestSchemas['redactionReportSchema']>;

export type { ArtifactKind };

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
  /** The format version all three version fields agree on: 1 (original), 2, 3 (signed). */
  version: FormatVersion;
  layout: LayoutVersion;
}

export type FormatVersion = 1 | 2 | 3;

/**
 * Parses and gates manifest bytes: strict JSON (json.ts: depth, duplicate names, integers only), the
 * version fields (SchemaTooNewError when a newer writer made it, BundleDamagedError when missing,
 * malformed or disagreeing), the schema, and the fields a version may carry. Every other rule on the
 * manifest's content is manifestProblems() (rules.ts), so verify can report them all.
 */
export function parseManifest(bytes: Buffer): ParsedManifest {
  let raw: unknown;
  try {
    raw = parseStrictJson(bytes, { manifest: true });
  } catch (err) {
    throw new BundleDamagedError(`manifest.json is not valid: ${(err as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new BundleDamagedError('manifest.json is not a JSON object');
  }
  const obj = raw as Record<string, unknown>;
  const version = formatVersion(obj);
  // The artifact list (thousands of entries) checked by hand when every entry is plainly valid, and
  // the rest by the schema; any other list goes to the schema whole, whose verdict and message stand.
  const artifacts = plainArtifacts(obj.artifacts);
  const parsed = manifestSchemas().manifestSchema.safeParse(artifacts ? { ...obj, artifacts: [] } : obj);
  if (parsed.success && artifacts) parsed.data.artifacts = artifacts;
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new BundleDamagedError(
      `manifest.json field ${first?.path.join('.') || '(root)'}: ${first?.message ?? 'invalid'}`,
    );
  }
  const misplaced = fieldsForeignTo(version, obj, parsed.data);
  if (misplaced) throw new BundleDamagedError(misplaced);
  return { manifest: parsed.data, raw: obj, version, layout: version === 1 ? 1 : 2 };
}

const KINDS: ReadonlySet<unknown> = new Set(ARTIFACT_KINDS);

/**
 * The manifest's `artifacts` as the schema's artifactSchema gives them (its four members, in its order,
 * any other member left out) when every entry is one the schema accepts for certain: an object whose
 * `path_in_bundle` is a non-empty string, `kind` one of ARTIFACT_KINDS, `size_bytes` an integer in
 * 0..2^53 − 1 and `sha256` 64 lowercase hex characters. Undefined for anything else, which the schema
 * then judges. The schema's own pass over ref-170's 2,009 entries took ~30 ms of a one-shot process
 * (docs/operations.md, "stop 67"); this one takes a few.
 */
export function plainArtifacts(list: unknown): Artifact[] | undefined {
  if (!Array.isArray(list)) return undefined;
  const out: Artifact[] = new Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const a: unknown = list[i];
    if (a === null || typeof a !== 'object' || Array.isArray(a)) return undefined;
    const { path_in_bundle: path, kind, size_bytes: size, sha256 } = a as Record<string, unknown>;
    if (typeof path !== 'string' || path.length === 0 || !KINDS.has(kind)) return undefined;
    if (!isCount(size) || typeof sha256 !== 'string' || !HEX64.test(sha256)) return undefined;
    out[i] = { path_in_bundle: path, kind: kind as ArtifactKind, size_bytes: size, sha256 };
  }
  return out;
}

const FORMAT_NAME = /^nexo-memory-snapshot-v([0-9]+)$/;
const FORMAT_OF: Record<FormatVersion, string> = {
  1: BUNDLE_FORMAT_V1,
  2: BUNDLE_FORMAT,
  3: BUNDLE_FORMAT_SIGNED,
};

/**
 * The format version of a raw manifest. First the gate against newer writers (any of
 * `manifest_version`, `bundle_format` or a `schema_versions` entry above what this reader knows:
 * SchemaTooNewError), then agreement: `manifest_version` N in 1..3, `bundle_format`
 * `nexo-memory-snapshot-vN` and `schema_versions.manifest` N, or the bundle is damaged.
 */
function formatVersion(raw: Record<string, unknown>): FormatVersion {
  const mv = raw.manifest_version;
  const bf = raw.bundle_format;
  const sv = raw.schema_versions;
  const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);
  const named = typeof bf === 'string' ? FORMAT_NAME.exec(bf) : null;
  // 4 and 5 are the repository's manifests (repository/manifest.ts), known to this reader and never
  // written into a bundle: not a newer writer's bundle, so "upgrade" would be the wrong advice
  for (const v of [isInt(mv) ? mv : undefined, named ? Number(named[1]) : undefined])
    if (v === 4 || v === 5)
      throw new BundleDamagedError(
        `manifest version ${v} is a repository manifest's, never a bundle's (bundles are versions 1 to 3)`,
      );
  if (isInt(mv) && mv > SIGNED_MANIFEST_VERSION)
    throw new SchemaTooNewError(mv, SIGNED_MANIFEST_VERSION, 'manifest_version');
  if (named && Number(named[1]) > SIGNED_MANIFEST_VERSION)
    throw new SchemaTooNewError(Number(named[1]), SIGNED_MANIFEST_VERSION, `bundle_format ${bf}`);
  if (sv !== null && typeof sv === 'object' && !Array.isArray(sv)) {
    for (const key of Object.keys(READABLE_SCHEMA) as Array<keyof SchemaVersions>) {
      const v = (sv as Record<string, unknown>)[key];
      if (isInt(v) && v > READABLE_SCHEMA[key])
        throw new SchemaTooNewError(v, READABLE_SCHEMA[key], `schema_versions.${key}`);
    }
  }
  if (!isInt(mv) || mv < 1)
    throw new BundleDamagedError('manifest.json: manifest_version is missing or not a positive integer');
  const version = mv as FormatVersion;
  if (bf !== FORMAT_OF[version])
    throw new BundleDamagedError(
      `manifest.json: bundle_format ${JSON.stringify(bf)} disagrees with manifest_version ${mv} (${FORMAT_OF[version]})`,
    );
  const svManifest =
    sv !== null && typeof sv === 'object' ? (sv as Record<string, unknown>).manifest : undefined;
  if (svManifest !== mv)
    throw new BundleDamagedError(
      `manifest.json: schema_versions.manifest ${JSON.stringify(svManifest)} disagrees with manifest_version ${mv}`,
    );
  return version;
}

/** Manifest members that only v2 and v3 define: a v1 (original) manifest carrying one is damaged. */
export const V2_ONLY_FIELDS = ['manifest_seal', 'signature', 'memdir', 'databases'] as const;
/** Members of `git` that only v2 and v3 define. */
export const V2_ONLY_GIT_FIELDS = ['repository', 'head_ref', 'detached'] as const;
/** Members of `redactions` beyond the original's four, which only v2 and v3 define. */
export const V2_ONLY_REDACTION_FIELDS = [
  'ruleset',
  'rule_counts',
  'excluded_rules',
  'allowlist_entries',
  'git_history',
  'git',
  'sqlite',
  'not_scanned',
] as const;

/** Why the manifest carries a member its version does not define (v1: v2-only fields; v1/v2: a signature). */
function fieldsForeignTo(
  version: FormatVersion,
  raw: Record<string, unknown>,
  m: Manifest,
): string | undefined {
  if (version === 2 && Object.hasOwn(raw, 'signature'))
    return 'manifest.json: a v2 manifest carries a signature (signed bundles are v3)';
  if (version !== 1) return undefined;
  const has = (o: unknown, k: string): boolean =>
    o !== null && typeof o === 'object' && Object.hasOwn(o as object, k);
  const found = [
    ...V2_ONLY_FIELDS.filter((k) => has(raw, k)),
    ...V2_ONLY_GIT_FIELDS.filter((k) => has(raw.git, k)).map((k) => `git.${k}`),
    ...V2_ONLY_REDACTION_FIELDS.filter((k) => has(raw.redactions, k)).map((k) => `redactions.${k}`),
    ...(m.artifacts.some((a) => a.path_in_bundle === GIT_BUNDLE_PATH) ? [`artifact ${GIT_BUNDLE_PATH}`] : []),
  ];
  return found.length > 0
    ? `manifest.json: a v1 manifest carries what only v2 defines: ${found.join(', ')}`
    : undefined;
}
