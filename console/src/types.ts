// The API's JSON shapes the console reads (the library's types, restated for the browser build).

export interface Rights {
  rights: 'read' | 'write';
  write: boolean;
  restore: boolean;
  restore_refused?: string;
  read_only: boolean;
  retention: boolean;
  version: string;
}

export interface SnapshotMeta {
  id: string;
  agent_id: string;
  tenant: string;
  label?: string;
  created_at_ms: number;
  bundle_size_bytes: number;
  /** null: not known (a listing entry rebuilt after a kill). */
  added_bytes?: number | null;
  git_oid?: string;
  encrypted: boolean;
  redactions_applied: boolean;
  created_by?: string;
  signed_by?: string;
  pinned?: boolean;
  /** The pin's note, whole, when it has one (operator or bundle text: shown through shownName). */
  pin_note?: string;
}

export interface Alert {
  code: string;
  message: string;
}

export interface AgentOverview {
  agent_id: string;
  tenant: string;
  snapshots: number;
  last_snapshot_id?: string;
  last_snapshot_at_ms?: number;
  bytes_stored: number;
  /** Snapshots bytes_stored leaves out, their added bytes not known. */
  added_unknown: number;
  bytes_added_last?: number | null;
  pins: number;
  kinds: Record<string, number>;
  last_verify?: { snapshot_id: string; status: string; deep: boolean; at_ms: number };
  schedule?: { interval_secs: number; runs: number; failures: number; next_at_ms?: number };
  alerts: Alert[];
}

export interface Decision {
  id: string;
  created_at_ms: number;
  label?: string;
  action: 'keep' | 'delete';
  reasons: string[];
  because?: string;
}

export interface Activity {
  id: string;
  op: string;
  source: string;
  pid?: number;
  host?: string;
  agent_id?: string;
  tenant?: string;
  dry_run?: boolean;
  started_at_ms: number;
  phase?: string;
  bytes?: number;
  total?: number;
  ended_at_ms?: number;
  outcome?: 'ok' | 'failed' | 'unknown';
  result?: Record<string, unknown>;
  error?: { code: string; message: string; error_id?: string };
}

export interface VerifyReport {
  status: string;
  manifest_ok: boolean;
  per_artifact_ok: boolean;
  artifacts_checked: number;
  artifacts_total: number;
  bytes_checked: number;
  deep?: Record<string, unknown>;
  signature?: { status: string; key_id?: string };
  problems: Array<{ code: string; message: string; path?: string }>;
  not_checked: Array<{ check: string; reason: string }>;
}

export interface TableDiff {
  table: string;
  rows_a: number;
  rows_b: number;
  added: number;
  removed: number;
  changed: number;
  redacted: number;
  rows?: { added: unknown[]; removed: unknown[]; changed: Array<{ before: unknown; after: unknown }> };
}

export interface SnapshotDiff {
  a: string;
  b: string;
  git_summary: {
    commits_between: number;
    commits_reverse: number;
    files_changed: number;
    insertions: number;
    deletions: number;
    head_a?: string;
    head_b?: string;
  };
  state_summary: { extract_cursor_changed: boolean; last_dream_run_changed: boolean };
  files: Array<{
    path: string;
    status: string;
    /** With status `renamed`: the path in a. */
    old_path?: string;
    insertions: number;
    deletions: number;
    binary: boolean;
    patch?: string;
    patch_truncated?: true;
    patch_bytes?: number;
  }>;
  databases: Array<{
    db: string;
    presence: string;
    tables: TableDiff[];
    schema_changes: Array<{ type: string; name: string; change: string }>;
  }>;
  state?: Record<string, { a?: unknown; b?: unknown }>;
}

export interface ComponentChange {
  component: string;
  action: string;
  rows?: Record<string, { old: number; new: number }>;
  head?: { old?: string; new?: string };
  files?: { added: string[]; removed: string[]; changed: string[] };
}

export interface RestoreReport {
  from: string;
  dry_run: boolean;
  pre_snapshot?: string;
  components: ComponentChange[];
  warnings: string[];
  redacted: boolean;
}

export interface LsEntry {
  name: string;
  path: string;
  type: 'dir' | 'file' | 'database' | 'table' | 'virtual_table' | 'state';
  size_bytes?: number;
  rows?: number;
}

export interface LsResult {
  path: string;
  /** One page, sorted by name. */
  entries: LsEntry[];
  /** Entries at the path in all. */
  total: number;
  truncated: boolean;
  /** When truncated: give it as `cursor` for the next page. */
  next_cursor?: string;
}

export type Cell =
  | string
  | number
  | null
  | { text?: string; blob_base64?: string; size_bytes?: number; truncated?: boolean };

export type CatResult =
  | {
      kind: 'file';
      path: string;
      size_bytes: number;
      truncated: boolean;
      binary: boolean;
      content?: string;
      length: number;
    }
  | {
      kind: 'table';
      path: string;
      columns: string[];
      rows: Record<string, Cell>[];
      total_rows: number;
      offset: number;
      limit: number;
      truncated: boolean;
    }
  | { kind: 'database'; path: string; tables: Array<{ table: string; total_rows: number }> };
