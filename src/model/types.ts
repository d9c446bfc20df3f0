// Owns the public data shapes: requests and reports. JSON field names follow the original's wire
// contract (snake_case, optional fields omitted, never null); fields the port adds are documented in
// docs/format.md. Pure: no I/O.

export const DB_NAMES = ['long_term', 'vector', 'concepts', 'compactions'] as const;
export type DbName = (typeof DB_NAMES)[number];

export const STATE_KEYS = ['extract_cursor', 'dream_run'] as const;
export type StateKey = (typeof STATE_KEYS)[number];

export interface SchemaVersions {
  long_term: number;
  vector: number;
  concepts: number;
  compactions: number;
  manifest: number;
}

/** One snapshot as listed: the original's SnapshotMeta plus `file_sha256`, `created_by`, `format`. */
export interface SnapshotMeta {
  id: string;
  agent_id: string;
  tenant: string;
  label?: string;
  created_at_ms: number;
  bundle_path: string;
  bundle_size_bytes: number;
  /** The manifest's digest seal (the original meaning), the same in snapshot() and list(). */
  bundle_sha256: string;
  git_oid?: string;
  schema_versions: SchemaVersions;
  encrypted: boolean;
  redactions_applied: boolean;
  /** Added: SHA-256 of the bundle file bytes (what the `.sha256` sibling holds). */
  file_sha256?: string;
  /** Added: who made it (`cli`, `tool`, `auto-pre-restore`, …). */
  created_by?: string;
  /** Added: `bundle_format` of the manifest (`nexo-memory-snapshot-v1` or `-v2`). */
  bundle_format?: string;
}

export type ProgressPhase = 'capture' | 'hash' | 'pack' | 'verify' | 'copy';

/** Progress of a long operation; `total` is known for byte phases. */
export interface ProgressEvent {
  phase: ProgressPhase;
  bytes: number;
  total?: number;
}

export type ProgressListener = (event: ProgressEvent) => void;

export interface SnapshotRequest {
  agentId: string;
  tenant?: string;
  label?: string;
  /** Who asked: `cli`, `tool`, `auto-pre-restore`, `auto-pre-dream`, `scheduled`, … (default `library`). */
  createdBy?: string;
  onProgress?: ProgressListener;
}

export type SiblingStatus = 'ok' | 'missing' | 'mismatch' | 'unreadable';

export interface VerifyProblem {
  /** A stable error code (the same codes the typed errors carry). */
  code: string;
  message: string;
  path?: string;
}

export interface NotChecked {
  check: string;
  reason: string;
}

export interface DeepReport {
  /** `ok` or the first lines integrity_check printed, per database in the bundle. */
  sqlite_integrity: Record<string, string>;
  /** `ok`, the problem, or absent when the bundle has no git history. */
  git?: string;
}

/**
 * The original's VerifyReport (first six fields) plus what the port checks. Every boolean is true only
 * when that check ran and passed; what was not checked is listed in `not_checked` with the reason.
 */
export interface VerifyReport {
  bundle: string;
  manifest_ok: boolean;
  bundle_sha256_ok: boolean;
  per_artifact_ok: boolean;
  schema_versions?: SchemaVersions;
  age_protected: boolean;
  /** `verified` (exit 0), `damaged` (exit 2) or `incomplete` (exit 3). */
  status: 'verified' | 'damaged' | 'incomplete';
  sibling: SiblingStatus;
  /** Every tar entry is a regular file at a safe path inside the layout; no duplicates. */
  layout_ok: boolean;
  /** The decompressed stream stayed within the size the manifest declares. */
  size_ok: boolean;
  schema_ok: boolean;
  manifest_version?: number;
  bundle_format?: string;
  snapshot_id?: string;
  agent_id?: string;
  tenant?: string;
  created_at_ms?: number;
  artifacts_checked: number;
  artifacts_total: number;
  bytes_checked: number;
  file_sha256?: string;
  deep?: DeepReport;
  problems: VerifyProblem[];
  not_checked: NotChecked[];
}

export interface ExportResult {
  path: string;
  sibling_path: string;
  bundle_size_bytes: number;
  file_sha256: string;
  verify: VerifyReport;
}

export interface DeleteResult {
  id: string;
  agent_id: string;
  tenant: string;
  bundle_path: string;
}
