// Owns the result shapes of reading memory as of a snapshot (`ls`, `cat`, `find`): what the library
// returns, the CLI prints under --json, the HTTP API and the MCP tools return unchanged. Pure types and
// the size bounds every surface shares.

/** `cat` of a memory file returns at most this many bytes per call (page with offset/limit). */
export const MAX_CAT_BYTES = 1024 * 1024;
/** `cat` of a table returns at most this many rows per call. */
export const MAX_CAT_ROWS = 1000;
/** Default rows per call (`cat` of a table, or of each table of a database). */
export const DEFAULT_CAT_ROWS = 100;
/** A text value of a row is cut after this many characters, a blob after this many bytes. */
export const MAX_VALUE_CHARS = 64 * 1024;
/** A memory file above this size is not read by `cat` (it is never a memory file an agent writes). */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;
/** `ls` returns at most this many entries per call (the API's and MCP's default; page with `cursor`). */
export const MAX_LS_ENTRIES = 1000;
/** `find`: at most this many locations are reported per snapshot (the count is always exact). */
export const MAX_FIND_LOCATIONS = 100;

/** One entry of `ls`. */
export interface LsEntry {
  /** Last segment (as stored: a hostile name is data, shown, never used as a path on disk). */
  name: string;
  /** Full browse path, e.g. `memdir/topics/a.md`, `sqlite/long_term`, `sqlite/long_term/memories`. */
  path: string;
  type: 'dir' | 'file' | 'database' | 'table' | 'virtual_table' | 'state';
  /** file, database, state: stored size in bytes. */
  size_bytes?: number;
  /** file, database, state: SHA-256 of the stored bytes. */
  sha256?: string;
  /** table: number of rows. */
  rows?: number;
  /** virtual_table: its module (`fts5`, `rtree`, …); its rows are never read (docs/browse.md). */
  module?: string;
  /** virtual_table: the tables holding its data, when SQLite knows its module (each listed as a table). */
  shadow_tables?: string[];
}

export interface LsResult {
  snapshot_id: string;
  agent_id: string;
  tenant: string;
  created_at_ms: number;
  /** The browse path listed ('' for the root). */
  path: string;
  /** This page's entries, sorted by name (its UTF-8 bytes; docs/browse.md). */
  entries: LsEntry[];
  /** Entries at this path in all (every page). */
  total: number;
  /** More entries follow this page: ask again with `cursor: next_cursor`. */
  truncated: boolean;
  /** When truncated: the cursor of the next page (opaque; the position after this page's last entry). */
  next_cursor?: string;
}

export interface LsOptions {
  /** Entries per page, 1..MAX_LS_ENTRIES (default: every entry; the API and MCP default to MAX_LS_ENTRIES). */
  limit?: number;
  /** `next_cursor` of the page before, for the same path: the entries after it. */
  cursor?: string;
}

/** `cat` of a memory file or a state value: a page of its bytes. */
export interface CatFile {
  kind: 'file';
  snapshot_id: string;
  path: string;
  /** Stored size in bytes. */
  size_bytes: number;
  sha256: string;
  /** Byte offset of this page (in the shown form: the text after redaction, or the stored bytes). */
  offset: number;
  /** Bytes of this page. */
  length: number;
  /** More bytes follow (call again with offset + length). */
  truncated: boolean;
  /** The file is not UTF-8 text (or holds NUL): `content_base64` carries it; otherwise `content`. */
  binary: boolean;
  content?: string;
  content_base64?: string;
  /** `redacted`: text passed through the redaction rules (default); `shown`: as stored. */
  output: 'redacted' | 'shown';
}

/** A cell value: JSON scalars as they are; blobs as base64 with their size. */
export type CellValue =
  | string
  | number
  | null
  | { blob_base64: string; size_bytes: number; truncated?: boolean }
  | { text: string; size_chars: number; truncated: true };

export interface CatTable {
  kind: 'table';
  snapshot_id: string;
  path: string;
  db: string;
  table: string;
  /** `rowid` first when the table has one, then the declared columns. */
  columns: string[];
  rows: Record<string, CellValue>[];
  total_rows: number;
  offset: number;
  limit: number;
  truncated: boolean;
  output: 'redacted' | 'shown';
}

export interface CatDatabase {
  kind: 'database';
  snapshot_id: string;
  path: string;
  db: string;
  /** Every table of the database with a page of its rows (the same offset/limit for each). */
  tables: Omit<CatTable, 'kind' | 'snapshot_id' | 'output'>[];
  output: 'redacted' | 'shown';
}

export type CatResult = CatFile | CatTable | CatDatabase;

export interface CatOptions {
  /** Rows (table, database) or bytes (file) to skip. */
  offset?: number;
  /** Rows (default 100, at most 1000) or bytes (default and at most 1 MiB). */
  limit?: number;
  /** Show values as stored, secrets included (default: redacted). Never offered by the API. */
  showSecrets?: boolean;
}

export interface FindRequest {
  agentId: string;
  tenant?: string;
  /** Exactly one of `text` (plain substring, case-sensitive) and `regex` (JavaScript syntax). */
  text?: string;
  regex?: string;
  /** Only snapshots taken at or after this time (ms since the epoch). */
  sinceMs?: number;
  /** Report matches hidden by redaction (default: a match only inside a secret is not reported). */
  showSecrets?: boolean;
  /** Identity file for encrypted bundles and repositories. */
  decryptIdentity?: string;
}

/** Where the text occurs in one snapshot. */
export type FindLocation =
  | { kind: 'file'; path: string; matches: number; snippet?: string }
  | {
      kind: 'row';
      path: string;
      db: string;
      table: string;
      rowid: number | string;
      column: string;
      snippet?: string;
    }
  | { kind: 'state'; path: string; snippet?: string };

export interface FindSnapshotHit {
  snapshot_id: string;
  created_at_ms: number;
  label?: string | null;
  /** Whether the text occurs anywhere in this snapshot. */
  found: boolean;
  /** Number of locations (files, rows, state values) holding it. */
  count: number;
  /** Up to 100 of them. */
  locations: FindLocation[];
}

export interface FindResult {
  agent_id: string;
  tenant: string;
  query: { text?: string; regex?: string; since_ms?: number };
  /** Every snapshot searched, oldest first (not those skipped: stats.snapshots_skipped). */
  snapshots: FindSnapshotHit[];
  /** The oldest snapshot holding it. */
  first_seen?: { snapshot_id: string; created_at_ms: number };
  /** The first snapshot after `first_seen` that no longer holds it (when did the agent forget it). */
  first_gone?: { snapshot_id: string; created_at_ms: number };
  /** Every appearance and disappearance, oldest first (text learned, forgotten, learned again). */
  transitions: { snapshot_id: string; created_at_ms: number; change: 'appears' | 'gone' }[];
  /**
   * What was read: distinct units searched, bytes scanned, databases opened to confirm rows. Those
   * counts depend on the stored bytes, secrets included, so redacted output has only `snapshots` and
   * `manifests_cached` (docs/browse.md).
   */
  stats: {
    snapshots: number;
    units_searched?: number;
    units_reused?: number;
    bytes_scanned?: number;
    /** Distinct blobs not read because their sketch shows they cannot hold the text (docs/browse.md). */
    units_skipped?: number;
    databases_opened?: number;
    /** Repository manifests taken from find's cache of checked manifests (stored bytes unchanged). */
    manifests_cached: number;
    /**
     * Listed snapshots not searched because their manifest names another agent, tenant or snapshot
     * (a forged listing entry or sidecar: docs/browse.md); only when there are any. Each is warned about.
     */
    snapshots_skipped?: number;
  };
  output: 'redacted' | 'shown';
}
