// Owns the snapshot manifest of a repository (v4, v5 when signed; docs/repository.md §6): the bundle
// manifest's fields plus where every artifact's bytes are (chunk ids, chunk-list ids, the git pack
// chain), the git refs and, for a snapshot stored from a bundle, its origin; sealing and signing it
// with the bundle's rules; parsing it (untrusted); and its bundle view (what restore, diff and the
// manifest rules read as they read a v2 bundle's).

import { type SigningKey, signMessage } from '../crypto/sign.js';
import { ARTIFACT_KINDS, GIT_BUNDLE_PATH } from '../format/constants.js';
import { parseStrictJson, parseStrictJsonSpans } from '../format/json.js';
import {
  type Artifact,
  canonicalJson,
  digestSeal,
  type Manifest,
  manifestSchemas,
  manifestSeal,
  signedMessage,
} from '../format/manifest.js';
import { BundleDamagedError, SchemaTooNewError } from '../model/errors.js';
import { HEX64, isCount } from '../model/meta-check.js';
import { type z, zod } from '../util/zod.js';

export const REPO_MANIFEST_VERSION = 4;
export const REPO_MANIFEST_VERSION_SIGNED = 5;
export const REPO_FORMAT = 'nexo-memory-snapshot-v4';
export const REPO_FORMAT_SIGNED = 'nexo-memory-snapshot-v5';
export const GIT_HISTORY_PATH = 'git/history';
export const GIT_HISTORY_KIND = 'git_history';

/** The repository manifest's schemas, built on first use (as the bundle manifest's: format/manifest.ts). */
function buildSchemas() {
  const z = zod();
  const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex characters');
  const u = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

  /** Where a byte string is: inline chunk ids, chunk lists, or (neither) one blob whose id is its sha256. */
  const located = {
    chunks: z.array(hex64).max(1024).optional(),
    chunk_lists: z.array(hex64).max(1_000_000).optional(),
  };

  const gitPackSchema = z.object({ size_bytes: u, sha256: hex64, ...located });

  const repoArtifactSchema = z.object({
    path_in_bundle: z.string().min(1),
    kind: z.enum([...ARTIFACT_KINDS, GIT_HISTORY_KIND]),
    size_bytes: u,
    sha256: hex64,
    ...located,
    /** git_history only: the pack chain, oldest first. */
    packs: z.array(gitPackSchema).max(4096).optional(),
  });

  const gitRefSchema = z.object({
    name: z.string().min(1).max(1024),
    // sha1 or sha256 object ids (git's object formats)
    oid: z.string().regex(/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/),
  });

  /**
   * A snapshot stored from a bundle (import, migrate): the bundle it was verified from — its format, id,
   * agent, tenant, time, seals, the file's SHA-256 when it had a sibling, and its signature's key and
   * status as checked then (a signature signs the bundle's manifest, so it cannot be carried over).
   */
  const originSchema = z.object({
    via: z.enum(['import', 'migrate']),
    bundle_format: z.string().max(64),
    snapshot_id: z.string().max(64),
    agent_id: z.string().max(1024),
    tenant: z.string().max(1024),
    created_at_ms: z.number().int(),
    bundle_sha256: hex64,
    manifest_seal: hex64.optional(),
    file_sha256: hex64.optional(),
    signature: z
      .object({
        key_id: z.string().regex(/^[0-9a-f]{16}$/),
        status: z.enum(['trusted', 'valid', 'untrusted']),
      })
      .optional(),
  });

  const repoManifestSchema = manifestSchemas().manifestSchema.extend({
    artifacts: z.array(repoArtifactSchema),
    git_refs: z.array(gitRefSchema).max(1_000_000).optional(),
    repository_id: hex64,
    origin: originSchema.optional(),
  });

  /** The manifest's fields, its artifacts unchecked (checked one by one: ArtifactMemo, find's cache). */
  const repoManifestShellSchema = repoManifestSchema.extend({ artifacts: z.array(z.unknown()) });
  return {
    gitPackSchema,
    repoArtifactSchema,
    gitRefSchema,
    originSchema,
    repoManifestSchema,
    repoManifestShellSchema,
  };
}

type RepoSchemas = ReturnType<typeof buildSchemas>;
let schemas: RepoSchemas | undefined;
export const repoSchemas = (): RepoSchemas => (schemas ??= buildSchemas());

export type RepoManifest = z.infer<RepoSchemas['repoManifestSchema']>;
export type RepoArtifact = z.infer<RepoSchemas['repoArtifactSchema']>;
export type GitPack = z.infer<RepoSchemas['gitPackSchema']>;
export type SnapshotOrigin = z.infer<RepoSchemas['originSchema']>;
export type Located = Pick<RepoArtifact, 'chunks' | 'chunk_lists' | 'sha256' | 'size_bytes'>;

export type RepoManifestDraft = Omit<
  RepoManifest,
  'bundle_sha256' | 'manifest_seal' | 'signature' | 'manifest_version' | 'bundle_format'
>;

/** The digest of a git history artifact: SHA-256 over its packs' hex digests, in chain order. */
export const packChainDigest = (packs: readonly { sha256: string }[]): string => digestSeal(packs);

/** Seals (and with a key, signs: v5) a draft; returns the manifest and its JSON bytes. */
export function sealRepoManifest(
  draft: RepoManifestDraft,
  key?: SigningKey,
): { manifest: RepoManifest; json: Buffer } {
  const version = key ? REPO_MANIFEST_VERSION_SIGNED : REPO_MANIFEST_VERSION;
  const withVersion = {
    manifest_version: version,
    bundle_format: key ? REPO_FORMAT_SIGNED : REPO_FORMAT,
    ...draft,
    schema_versions: { ...draft.schema_versions, manifest: version },
  };
  const withDigest = { ...withVersion, bundle_sha256: digestSeal(draft.artifacts) } as RepoManifest;
  const seal = manifestSeal(withDigest);
  const manifest: RepoManifest = { ...withDigest, manifest_seal: seal };
  if (key) {
    manifest.signature = {
      scheme: 'ed25519',
      key_id: key.keyId,
      public_key: key.publicKey,
      value: signMessage(key, signedMessage(manifest.bundle_format, seal)).toString('base64'),
    };
  }
  return { manifest, json: Buffer.from(JSON.stringify(manifest)) };
}

export interface ParsedRepoManifest {
  manifest: RepoManifest;
  raw: Record<string, unknown>;
}

/**
 * What one reader of many manifests learnt about their artifacts, by each artifact's text in its
 * manifest: its parsed value and its canonical JSON. The manifests of one agent share most of their
 * artifacts (a 1 % change rewrites a few), so each distinct artifact is checked and canonicalised once
 * (find reads hundreds of manifests; the canonical JSON is kept as UTF-8). The parsed artifacts are
 * shared between the manifests: a reader that passes a memo must not change them.
 */
export class ArtifactMemo {
  readonly byJson = new Map<string, { artifact: RepoArtifact; canonical: Buffer }>();
}

/** An artifact's own checks (after the schema), the same with or without a memo. */
function artifactProblem(a: RepoArtifact): string | undefined {
  if ((a.kind === GIT_HISTORY_KIND) !== (a.packs !== undefined))
    return `${a.path_in_bundle}: packs belong to the git history only`;
  if (a.packs && packChainDigest(a.packs) !== a.sha256)
    return `${a.path_in_bundle}: sha256 does not match its packs`;
  for (const [i, ref] of [a, ...(a.packs ?? [])].entries()) {
    const problem = locatedProblem(ref);
    if (problem) return `${a.path_in_bundle}${i > 0 ? ` pack ${i - 1}` : ''}: ${problem}`;
  }
  return undefined;
}

/**
 * Where a reference's bytes are, spelt one way (docs/repository.md §6): `chunks` or `chunk_lists`,
 * never both (an artifact or a history pack); empty content as `"chunks":[]`, never as neither (which
 * is a content of one chunk, its id its SHA-256, and every chunk is at least one byte); never more
 * chunks (or chunk lists, each naming at least one chunk) than bytes (content.ts chunkIds counts the
 * lists' chunks the same way). Writers never made another spelling; a reader that took one would read
 * the content otherwise than one that refuses it (the stop 64 review of an independent reader).
 */
function locatedProblem(ref: Located): string | undefined {
  if (ref.chunks && ref.chunk_lists) return 'both chunks and chunk_lists';
  if (!ref.chunks && !ref.chunk_lists && ref.size_bytes === 0)
    return 'empty content without "chunks":[] (neither names one chunk of at least one byte)';
  const n = ref.chunks?.length ?? ref.chunk_lists?.length ?? 0;
  if (n > ref.size_bytes) return `${n} chunks or chunk lists for ${ref.size_bytes} bytes`;
  return undefined;
}

const REPO_KINDS: ReadonlySet<unknown> = new Set([...ARTIFACT_KINDS, GIT_HISTORY_KIND]);
const hexList = (v: unknown, max: number): v is string[] =>
  Array.isArray(v) && v.length <= max && v.every((x) => typeof x === 'string' && HEX64.test(x));

/**
 * An artifact as repoArtifactSchema gives it (its members in the schema's order, any other left out)
 * when it is one the schema accepts for certain: an object whose `path_in_bundle` is a non-empty string,
 * `kind` one of the kinds, `size_bytes` an integer in 0..2^53 − 1, `sha256` and any `chunks` (at most
 * 1,024) or `chunk_lists` (at most 1,000,000) 64 lowercase hex characters, and no `packs`. Undefined
 * for anything else, which the schema then judges. The schema's own pass over ref-170's ~2,000
 * artifacts took ~50 ms of a one-shot process (a restore's, docs/operations.md "stop 67").
 */
export function plainRepoArtifact(a: unknown): RepoArtifact | undefined {
  if (a === null || typeof a !== 'object' || Array.isArray(a)) return undefined;
  const {
    path_in_bundle: path,
    kind,
    size_bytes: size,
    sha256,
    chunks,
    chunk_lists: lists,
    packs,
  } = a as Record<string, unknown>;
  if (typeof path !== 'string' || path.length === 0 || !REPO_KINDS.has(kind)) return undefined;
  if (!isCount(size) || typeof sha256 !== 'string' || !HEX64.test(sha256) || packs !== undefined)
    return undefined;
  if (chunks !== undefined && !hexList(chunks, 1024)) return undefined;
  if (lists !== undefined && !hexList(lists, 1_000_000)) return undefined;
  return {
    path_in_bundle: path,
    kind: kind as RepoArtifact['kind'],
    size_bytes: size,
    sha256,
    ...(chunks !== undefined ? { chunks: [...chunks] } : {}),
    ...(lists !== undefined ? { chunk_lists: [...lists] } : {}),
  };
}

/** An artifact as the schema gives it (plainRepoArtifact, else the schema), undefined when it fails. */
function checkedArtifact(el: unknown): RepoArtifact | undefined {
  const plain = plainRepoArtifact(el);
  if (plain) return plain;
  const a = repoSchemas().repoArtifactSchema.safeParse(el);
  return a.success ? a.data : undefined;
}

/** Every artifact checked (checkedArtifact), or undefined when one fails. */
function checkedArtifacts(list: unknown): RepoArtifact[] | undefined {
  if (!Array.isArray(list)) return undefined;
  const out: RepoArtifact[] = new Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const a = checkedArtifact(list[i]);
    if (!a) return undefined;
    out[i] = a;
  }
  return out;
}

/**
 * The manifest's fields and its artifacts (each from the memo or checked and added to it), and the
 * canonical JSON of each artifact; undefined when anything fails (the caller then checks the manifest
 * whole, which names the first problem as it always does).
 */
function parseWithMemo(
  raw: Record<string, unknown>,
  memo: ArtifactMemo,
  source: { text: string; spans: number[] },
): { m: RepoManifest; canonical: Buffer[] } | undefined {
  const shell = repoSchemas().repoManifestShellSchema.safeParse(raw);
  if (!shell.success) return undefined;
  const { text, spans } = source;
  if (spans.length !== 2 * shell.data.artifacts.length) return undefined;
  const artifacts: RepoArtifact[] = [];
  const canonical: Buffer[] = [];
  for (const [k, el] of shell.data.artifacts.entries()) {
    // the element's own text: equal texts are equal artifacts
    const key = text.slice(spans[2 * k], spans[2 * k + 1]);
    let known = memo.byJson.get(key);
    if (!known) {
      const artifact = checkedArtifact(el);
      if (!artifact || artifactProblem(artifact) !== undefined) return undefined;
      known = { artifact, canonical: Buffer.from(canonicalJson(el), 'utf8') };
      // a copy: a slice would keep the whole manifest's text alive as long as the memo
      memo.byJson.set(Buffer.from(key, 'utf8').toString('utf8'), known);
    }
    artifacts.push(known.artifact);
    canonical.push(known.canonical);
  }
  return { m: { ...shell.data, artifacts }, canonical };
}

/**
 * Parses a repository manifest and checks what needs no other object: versions agree, both seals, the
 * repository id. Signatures are checked by the caller against its trust policy. With `memo`, artifacts
 * seen in an earlier manifest are not checked again (the same checks, the same errors).
 */
export function parseRepoManifest(
  json: Buffer,
  repositoryId: string,
  what: string,
  memo?: ArtifactMemo,
): ParsedRepoManifest {
  let raw: unknown;
  let source: { text: string; spans: number[] } | undefined;
  try {
    // strictly, as a bundle's manifest (depth, duplicate names, integers) before anything recursive runs
    if (memo) {
      const { value, ...where } = parseStrictJsonSpans(json, { manifest: true }, 'artifacts');
      raw = value;
      source = where;
    } else raw = parseStrictJson(json, { manifest: true });
  } catch (err) {
    throw new BundleDamagedError(`${what}: not valid manifest JSON (${(err as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new BundleDamagedError(`${what}: not a JSON object`);
  const v = (raw as { manifest_version?: unknown }).manifest_version;
  if (typeof v === 'number' && v > REPO_MANIFEST_VERSION_SIGNED)
    throw new SchemaTooNewError(v, REPO_MANIFEST_VERSION_SIGNED, 'manifest_version', 'snapshot');
  const memoized = memo && source ? parseWithMemo(raw as Record<string, unknown>, memo, source) : undefined;
  let m: RepoManifest;
  // (the artifacts checked one by one, by hand when plainly valid, the rest by the shell schema)
  const artifacts = memoized ? undefined : checkedArtifacts((raw as { artifacts?: unknown }).artifacts);
  const shell = artifacts && repoSchemas().repoManifestShellSchema.safeParse(raw);
  if (memoized) m = memoized.m;
  else if (artifacts && shell?.success) m = { ...shell.data, artifacts };
  else {
    // the whole manifest by the schema: its verdict, and its message naming the first problem
    const parsed = repoSchemas().repoManifestSchema.safeParse(raw);
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      throw new BundleDamagedError(
        `${what}: field ${first?.path.join('.') || '(root)'}: ${first?.message ?? 'invalid'}`,
      );
    }
    m = parsed.data;
  }
  const signed = m.manifest_version === REPO_MANIFEST_VERSION_SIGNED;
  if (
    (m.manifest_version !== REPO_MANIFEST_VERSION && !signed) ||
    m.bundle_format !== (signed ? REPO_FORMAT_SIGNED : REPO_FORMAT) ||
    m.schema_versions.manifest !== m.manifest_version
  )
    throw new BundleDamagedError(
      `${what}: manifest_version, bundle_format and schema_versions.manifest disagree`,
    );
  if (signed !== (m.signature !== undefined))
    throw new BundleDamagedError(
      `${what}: ${signed ? 'a v5 manifest without its signature' : 'a v4 manifest with a signature'}`,
    );
  if (digestSeal(m.artifacts) !== m.bundle_sha256)
    throw new BundleDamagedError(`${what}: bundle_sha256 does not match the artifact digests`);
  if (
    m.manifest_seal === undefined ||
    manifestSeal(raw as Record<string, unknown>, memoized?.canonical) !== m.manifest_seal
  )
    throw new BundleDamagedError(`${what}: manifest_seal does not match the manifest (tampered?)`);
  if (m.repository_id !== repositoryId)
    throw new BundleDamagedError(`${what}: belongs to another repository (${m.repository_id.slice(0, 12)}…)`);
  if (!memoized)
    for (const a of m.artifacts) {
      const problem = artifactProblem(a);
      if (problem) throw new BundleDamagedError(`${what}: ${problem}`);
    }
  return { manifest: m, raw: raw as Record<string, unknown> };
}

/**
 * The manifest as a v2 bundle would carry it: the same fields, each artifact without its chunk
 * references, and the git history in the place (and under the path and kind) of the git bundle. The
 * parts of restore and diff that describe or compare a snapshot read this view, whatever its store.
 * Artifacts of the kind `git_bundle` (never written into a repository) are left out: the rules refuse them.
 */
export function bundleView(m: RepoManifest): Manifest {
  const { git_refs: _refs, repository_id: _repo, artifacts, ...rest } = m;
  const view: Artifact[] = [];
  for (const a of artifacts) {
    if (a.kind === 'git_bundle') continue;
    view.push({
      path_in_bundle: a.kind === GIT_HISTORY_KIND ? GIT_BUNDLE_PATH : a.path_in_bundle,
      kind: a.kind === GIT_HISTORY_KIND ? 'git_bundle' : a.kind,
      size_bytes: a.size_bytes,
      sha256: a.sha256,
    });
  }
  return { ...rest, artifacts: view };
}
