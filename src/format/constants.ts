// Owns the bundle format's constants: versions, artifact kinds, fixed in-bundle paths, size caps.
// Pure. docs/format.md is the prose version of this file and format/layout.ts.

import type { DbName, SchemaVersions, StateKey } from '../model/types.js';

/** The format this version writes. Every change an older reader would misread bumps both. */
export const MANIFEST_VERSION = 2;
export const BUNDLE_FORMAT = 'nexo-memory-snapshot-v2';
/**
 * A signed bundle: the v2 layout plus a mandatory `signature` in the manifest (docs/signatures.md).
 * Its own version, so readers that predate signatures refuse it (schema too new) instead of failing
 * its seal, and so removing the signature cannot turn it into a valid unsigned bundle of the same kind.
 */
export const SIGNED_MANIFEST_VERSION = 3;
export const BUNDLE_FORMAT_SIGNED = 'nexo-memory-snapshot-v3';
/** The original Rust crate's format (raw `.git` files under `git/`), read by verify and list. */
export const BUNDLE_FORMAT_V1 = 'nexo-memory-snapshot-v1';

/**
 * Schema versions this runtime writes and the highest it reads. `manifest` is 2 so that the original
 * reader (which gates only on `schema_versions`) refuses v2 bundles instead of misrestoring them.
 */
export const CURRENT_SCHEMA: Readonly<SchemaVersions> = Object.freeze({
  long_term: 1,
  vector: 1,
  concepts: 1,
  compactions: 1,
  manifest: 2,
});

/** The highest versions this runtime reads (signed bundles: manifest 3). */
export const READABLE_SCHEMA: Readonly<SchemaVersions> = Object.freeze({
  ...CURRENT_SCHEMA,
  manifest: SIGNED_MANIFEST_VERSION,
});

export const ARTIFACT_KINDS = [
  'git_bundle',
  'sqlite_long_term',
  'sqlite_vector',
  'sqlite_concepts',
  'sqlite_compactions',
  'state_extract_cursor',
  'state_dream_run',
  'memory_file',
] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];

export const MANIFEST_PATH = 'manifest.json';
export const GIT_BUNDLE_PATH = 'git/memdir.bundle';
export const MEMORY_FILES_PREFIX = 'memory_files/';
/** v1 only: raw files of the memdir's `.git` directory. */
export const GIT_V1_PREFIX = 'git/';

export const sqlitePath = (db: DbName): string => `sqlite/${db}.sqlite`;
export const sqliteKind = (db: DbName): ArtifactKind => `sqlite_${db}`;
export const statePath = (key: StateKey): string => `state/${key}.json`;
export const stateKind = (key: StateKey): ArtifactKind => `state_${key}`;

/** A manifest larger than this is refused before it is parsed (a 100k-file memdir needs ~15 MB). */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/** Tar framing allowance per entry when bounding the decompressed size (header + PAX/GNU long name). */
export const TAR_ENTRY_OVERHEAD = 3 * 512;
/** Allowance after the last entry: end-of-archive blocks plus record padding (GNU tar pads to 10 KiB). */
export const TAR_TRAILER_ALLOWANCE = 20 * 512;

export const ZERO_OID = '0'.repeat(40);

/** Placeholder git block, used only when the memdir is not a git repository (original §3.3). */
export const NO_REPO_GIT = Object.freeze({
  head_oid: ZERO_OID,
  head_subject: '(no memdir)',
  head_author: 'nexo-memory-snapshot <ops@example.com>',
  head_ts_ms: 0,
});
