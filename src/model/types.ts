// Owns the public data shapes: requests and reports. JSON field names follow the original's wire
// contract (snake_case, optional fields omitted, never null); fields the port adds are documented in
// docs/format.md. Pure: no I/O.

import type { SigningKey } from '../crypto/sign.js';

export const DB_NAMES = ['long_term', 'vector', 'concepts', 'compactions'] as const;
/** The files SQLite keeps beside a database `<name>.sqlite` (`<name>.sqlite-wal`, …). */
export const SQLITE_EXTRAS = ['-wal', '-shm', '-journal'];
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

/** One snapshot as listed: the original's SnapshotMeta plus `file_sha256`, `created_by`, `format`, `pinned`, …. */
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
  /** Added: `bundle_format` of the manifest (`nexo-memory-snapshot-v1`, `-v2`, or `-v3` when signed). */
  bundle_format?: string;
  /** Added: key id of the key that signed the manifest, as recorded (verify --trust checks it). */
  signed_by?: string;
  /** Added by list: whether the snapshot is pinned (retention never deletes it). */
  pinned?: boolean;
  /**
   * Added by list: the note of the pin (`pin --note`), when the snapshot is pinned with one. Stored in
   * plaintext with the pin (a bundle's `.pin`, a repository's `pins/<id>`), never in the sidecar or
   * the listing entry.
   */
  pin_note?: string;
  /**
   * Added by list and snapshot: the bytes the snapshot cost its store. A bundle: its file
   * (`bundle_size_bytes`; the `.sha256` sibling and `.meta.json` sidecar, caches of a few hundred
   * bytes, are not counted), on every entry. A repository snapshot: the pack files it wrote (data the
   * repository did not have; 0 when nothing changed), or `null` when that is not known: a listing
   * entry rebuilt from the manifest after it was lost (import and migrate re-list a stored snapshot
   * whose entry a kill lost), or written without it; the number cannot be derived from what the
   * repository holds (docs/repository.md §8), and the snapshot's size would overstate it.
   */
  added_bytes?: number | null;
  /**
   * Added, by snapshot only (its manifest's `memdir.skipped` holds them for later): memdir entries not
   * captured and why (a symlink, a special file, a name that is not UTF-8, a nested `.git`), so that a
   * file left out of the backup is said when it is taken. Absent when nothing was skipped.
   */
  memdir_skipped?: Array<{ path: string; reason: string }>;
  /**
   * Added, by snapshot only, when the host's clock was not later than the agent's newest snapshot: the
   * snapshot is dated 1 ms after that one instead (created_at_ms is monotonic per agent, stop 46), and
   * this says by how many ms the clock was behind. Absent when the clock's time was used.
   */
  clock_behind_ms?: number;
  /**
   * Added, by snapshot only: what the snapshot found missing that a mistyped root would explain (no
   * memdir, no database directory: each message names the path looked at), also told to the
   * snapshotter's onWarning. Absent when there is nothing to say.
   */
  warnings?: string[];
}

/**
 * A snapshot's phases (`capture`, `redact`, `hash`, `pack`), a verify's or a restore's stream (`verify`),
 * an export's (`copy`), and a restore's steps after its stream, announced by one event of 0 bytes each:
 * `check` (the databases' integrity checks and the report), `pre_snapshot` (the anchor), `swap`.
 */
export type ProgressPhase =
  | 'capture'
  | 'redact'
  | 'hash'
  | 'pack'
  | 'verify'
  | 'copy'
  | 'check'
  | 'pre_snapshot'
  | 'swap';

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
  /** age X25519 recipients (`age1…`) to encrypt the bundle to; default: the snapshotter's recipients. */
  encrypt?: string[];
  /**
   * Sign the manifest with this ed25519 key (a secret key file path, or a key from loadSigningKey);
   * default: the snapshotter's signing key; `false` for an unsigned bundle.
   */
  sign?: string | SigningKey | false;
  /**
   * Redact secrets from everything the bundle ships (docs/redaction.md), with the snapshotter's
   * `redaction` options. Default false: a snapshot stays on the host for rollback and restores exactly
   * (the original's CLI redacted by default; what leaves the host is redacted by `export` instead).
   * Anchors (pre-restore, pre-dream) are never redacted.
   */
  redact?: boolean;
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
  /**
   * `ok` or the problem, absent when the bundle has no git history: v2's git bundle is checked by every
   * verify (header and pack), so here it repeats that result; v1's raw `.git` files get `git fsck`.
   */
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
  /**
   * verified (exit 0); damaged (exit 2): a check failed; untrusted (exit 2): intact, but the signature
   * that trust requires is missing or by a key not trusted; incomplete (exit 3): not fully checked.
   */
  status: 'verified' | 'damaged' | 'untrusted' | 'incomplete';
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
  /**
   * The manifest's ed25519 signature, when the manifest was read: `trusted` (by a trusted key),
   * `valid` (no trusted keys given), `untrusted`, `invalid` or `unsigned`; `key_id` names the signer.
   */
  signature?: SignatureInfo;
  problems: VerifyProblem[];
  not_checked: NotChecked[];
}

/** Exit status for a verify report: 0 verified, 2 damaged or untrusted, 3 not fully verified. */
export function verifyExitCode(r: VerifyReport): number {
  return r.status === 'verified' ? 0 : r.status === 'incomplete' ? 3 : 2;
}

export interface SignatureInfo {
  status: 'trusted' | 'valid' | 'untrusted' | 'invalid' | 'unsigned';
  key_id?: string;
}

export interface ExportResult {
  path: string;
  sibling_path: string;
  bundle_size_bytes: number;
  file_sha256: string;
  verify: VerifyReport;
  /**
   * How the copy relates to the snapshot: `redacted` (re-packed here with secrets replaced, same
   * snapshot id), `already_redacted` (the snapshot itself is redacted; copied as it is), `encrypted`
   * (age-encrypted, so protected: copied as it is, not redacted), `exact` (asked: a copy with secrets).
   */
  copy: 'redacted' | 'already_redacted' | 'encrypted' | 'exact';
  /**
   * Whether the copy is a new bundle written here (every copy of a repository snapshot, a redacted or
   * decrypted copy of a bundle) rather than the bundle's file copied: it is signed only with this
   * host's `signing.key_path`.
   */
  repacked: boolean;
  /** Whether the copy is age-encrypted. */
  encrypted: boolean;
  /** Whether the copy is redacted (`redactions_applied` of its manifest). */
  redacted: boolean;
  /** When the copy was redacted here: what its redaction replaced. */
  redaction?: RestoreReport['redaction'];
}

export interface DeleteResult {
  id: string;
  agent_id: string;
  tenant: string;
  bundle_path: string;
  /**
   * Every copy removed: the bundle file, or the repository snapshot (`<repository>#<id>`) and, when the
   * snapshot was in both stores, its bundle too.
   */
  removed: string[];
}

/** Callbacks around the swap, so a host runtime can pause its workers and reopen its DB handles. */
export interface RestoreHooks {
  /** Called before the live files are swapped (after every check passed); throwing aborts the restore. */
  beforeSwap?(info: { agentId: string; tenant: string; restoreId: string }): void | Promise<void>;
  /** Called after the swap committed; `workers_restarted` is true only when this returned normally. */
  afterSwap?(info: { agentId: string; tenant: string; restoreId: string }): void | Promise<void>;
}

export interface RestoreRequest {
  agentId: string;
  tenant?: string;
  /**
   * Path of the bundle to restore (any path), or the `bundle_path` list and snapshot report for a
   * repository snapshot (`<repository>#<id>`). Give this or `snapshot`.
   */
  bundle?: string;
  /**
   * One of the agent's snapshots, by id or unique prefix: a repository snapshot or one of its bundles
   * (the alternative to `bundle`).
   */
  snapshot?: string;
  /**
   * Restore the agent's newest pre-restore anchor: undo the last restore (`restore --undo`). Give this
   * instead of `bundle` and `snapshot`. Like `snapshot: 'latest'`, it is chosen while the agent's lock is
   * held, so a restore or snapshot that finished meanwhile is taken into account.
   */
  undo?: boolean;
  dryRun?: boolean;
  /** Take an automatic pre-restore snapshot first (default true). */
  autoPreSnapshot?: boolean;
  decryptIdentity?: string;
  /** Trusted public keys (`nexo-sign-pub1…` strings or files); default: the snapshotter's. */
  trust?: string[];
  /**
   * Refuse bundles without a valid signature by a trusted key. Default: true when `trust` lists keys,
   * else the snapshotter's setting. An invalid signature is refused always.
   */
  requireSignature?: boolean;
  hooks?: RestoreHooks;
  onProgress?: ProgressListener;
  /** Restore a bundle of another agent (or tenant) as this one: `nexo-memory import`. */
  import?: { force?: boolean };
  /**
   * Restore a redacted bundle in place although its placeholders replace the live secrets
   * (`--allow-redacted`); without it such a restore is refused (`REDACTED_BUNDLE`). Dry runs and
   * imports never need it.
   */
  allowRedacted?: boolean;
}

/** Where a redacted bundle holds a placeholder `[REDACTED:<rule>]`: what a restore would write there. */
export interface PlaceholderLocation {
  /** Path in the bundle (`memory_files/…`, `state/….json`, `sqlite/….sqlite`). */
  artifact: string;
  /** Memory files: the path in the memdir. */
  file?: string;
  /** Memory files and state: the 1-based line. */
  line?: number;
  /** Databases: table and column, and the row's rowid (or its primary key, for WITHOUT ROWID tables). */
  table?: string;
  column?: string;
  rowid?: number;
  key?: Record<string, unknown>;
  /** The rule id in the placeholder. */
  rule: string;
}

/** What a restore changes (or, in a dry run, would change) in one component. */
export interface ComponentChange {
  component: string;
  action: 'replace' | 'create' | 'remove' | 'unchanged';
  /** Sizes in bytes of the live and the restored component (absent when there is none). */
  old_bytes?: number;
  new_bytes?: number;
  /** Databases: rows per table before → after. */
  rows?: Record<string, { old: number; new: number }>;
  /**
   * Memdir: HEAD before → after, and working tree files added, removed and changed; `uncaptured`: the
   * live entries no snapshot captures (symlinks, nested .git, special files), also in `removed`.
   */
  head?: { old?: string; new?: string };
  /**
   * Memdir: the refs under `refs/` (branches, tags, others) the restore adds, removes and moves, by
   * name; absent when either side's refs are not known (a v1 bundle).
   */
  refs?: { added: string[]; removed: string[]; changed: string[] };
  files?: { added: string[]; removed: string[]; changed: string[]; uncaptured?: string[] };
}

/** The original's RestoreReport (first eight fields, all now true to what happened) plus what the port adds. */
export interface RestoreReport {
  agent_id: string;
  from: string;
  pre_snapshot?: string;
  git_reset_oid?: string;
  sqlite_restored_dbs: string[];
  state_files_restored: string[];
  workers_restarted: boolean;
  dry_run: boolean;
  tenant: string;
  /** The bundle's path, or `<repository>#<snapshot id>` for a repository snapshot (as `list` names it). */
  bundle: string;
  restore_id?: string;
  /** Live databases absent from the bundle, moved aside so the live state equals the snapshot. */
  sqlite_removed_dbs: string[];
  /** Where the replaced live components were moved (kept until retention removes them). */
  backups: string[];
  /** Tag in the restored repository that keeps the pre-restore HEAD reachable. */
  pre_restore_tag?: string;
  /** The bundle's agent and tenant when it was imported as another agent. */
  imported_from?: { agent_id: string; tenant: string };
  /** An import into a repository store: the repository snapshot that holds the imported bundle. */
  stored_snapshot?: string;
  redacted: boolean;
  /** When `redacted`: what the snapshot's redaction replaced (from its manifest). */
  redaction?: {
    policy: string;
    rules_applied: string[];
    matches_redacted: number;
    git_history?: 'absent' | 'unchanged' | 'rewritten';
    /** Refs of the history whose target (tags peeled) is a blob or a tree: scanned like files, kept. */
    git_object_refs?: number;
  };
  /**
   * Dry run of a redacted bundle: where its placeholders are, i.e. which values the restore would
   * replace by placeholders (the first 1,000; `placeholders_total` counts all). The rewritten git
   * history is summarised by `redaction.git_history`, not listed.
   */
  placeholders?: PlaceholderLocation[];
  placeholders_total?: number;
  components: ComponentChange[];
  warnings: string[];
  /** The bundle's signature as checked before the restore (against the trusted keys, if any). */
  signature?: SignatureInfo;
}

export interface RecoverResult {
  agent_id: string;
  tenant: string;
  /**
   * `rolled_back` (the interrupted restore never happened) or `completed` (it had committed); `cleaned`
   * when there was no restore to finish but what killed operations left was removed.
   */
  outcome: 'rolled_back' | 'completed' | 'cleaned';
  /** The interrupted restore (not with `cleaned`). */
  restore_id?: string;
  /**
   * Leftovers of killed operations removed (restore staging, snapshot partials and staging) and
   * bundles completed (their sibling and sidecar rewritten): their paths.
   */
  leftovers_removed?: string[];
  /**
   * A repository snapshot an interrupted import had stored, forgotten because its restore never
   * committed (the import's record is then among `leftovers_removed`).
   */
  forgotten_snapshot?: string;
}

/**
 * One agent that `recover --all` could not recover (`recoverAll`): the sweep goes on with the next
 * agent and reports the error as the typed errors carry it (as gc's `AgentGcReport` does).
 */
export interface RecoverFailure {
  agent_id: string;
  tenant: string;
  outcome: 'failed';
  error: string;
  /** The error's stable code (`JOURNAL_DAMAGED`, `CONCURRENT`, …) and its exit status. */
  error_code: string;
  exit_code: number;
}

/** An entry of `recoverAll`'s report: an agent recovered (or cleaned), or one that failed. */
export type RecoverSweepEntry = RecoverResult | RecoverFailure;
