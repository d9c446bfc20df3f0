// Owns the MemorySnapshotter port: the operations every backend offers, as the original's trait
// (§1.2), restore and diff included, and reading memory as of a snapshot (ls, cat, find).

import type { CatOptions, CatResult, FindRequest, FindResult, LsOptions, LsResult } from '../browse/types.js';
import type { DiffRequest, SnapshotDiff } from '../diff/diff.js';
import type {
  DeleteResult,
  ExportResult,
  ProgressListener,
  RecoverResult,
  RestoreReport,
  RestoreRequest,
  SnapshotMeta,
  SnapshotRequest,
  VerifyReport,
} from '../model/types.js';

export interface VerifyRequestOptions {
  deep?: boolean;
  onProgress?: ProgressListener;
  /** age identity file that opens encrypted bundles (otherwise only the outside is checked: exit 3). */
  decryptIdentity?: string;
  /**
   * Trusted public keys (`nexo-sign-pub1…` strings or files); a non-empty list requires a valid
   * signature by one of them. Default: the snapshotter's trusted keys (required when it requires
   * signatures; otherwise they only tell `trusted` from `untrusted` in the report).
   */
  trust?: string[];
}

export interface ExportOptions {
  force?: boolean;
  onProgress?: ProgressListener;
  /**
   * Redact what leaves the host: a plaintext bundle that is not redacted yet is re-packed with its
   * secrets replaced (same snapshot id and metadata, fresh seals, signed again with the signing key).
   * Default: the snapshotter's `redactExports` (true). `false` copies it exactly. An encrypted bundle
   * copied encrypted is protected and copied as it is.
   */
  redact?: boolean;
  /**
   * Write a plaintext copy of an encrypted bundle, or of an encrypted repository's snapshot (which is
   * otherwise written encrypted to the configured recipients); redacted unless `redact: false`.
   */
  decrypt?: boolean;
  /**
   * age identity file: the exported copy of an encrypted bundle is verified fully before publishing
   * (and `decrypt` opens it).
   */
  decryptIdentity?: string;
  /**
   * Trusted public keys: the copy is published only if signed by one of them. Default: the
   * snapshotter's trusted keys when it requires signatures.
   */
  trust?: string[];
}

export interface MemorySnapshotter {
  snapshot(req: SnapshotRequest): Promise<SnapshotMeta>;
  /** Restores a bundle in place, atomically; `dryRun` reports what would change; `import` clones. */
  restore(req: RestoreRequest): Promise<RestoreReport>;
  /** Finishes or rolls back an interrupted restore of one agent. */
  recover(agentId: string, tenant?: string): Promise<RecoverResult | undefined>;
  /** Compares two snapshots of an agent (ids, unique prefixes, or `live`). */
  diff(req: DiffRequest): Promise<SnapshotDiff>;
  /** Newest first. */
  list(agentId: string, tenant?: string): Promise<SnapshotMeta[]>;
  /** Any bundle path; no agent or tenant confinement. */
  verify(bundlePath: string, opts?: VerifyRequestOptions): Promise<VerifyReport>;
  /**
   * One of the agent's snapshots, by id or unique prefix, with the same trust rule as `verify` (the
   * snapshotter's trusted keys, required when it requires signatures, unless `opts.trust` says
   * otherwise). The CLI, the HTTP API and the MCP tool all verify a snapshot through this.
   */
  verifySnapshot(
    agentId: string,
    tenant: string | undefined,
    id: string,
    opts?: VerifyRequestOptions,
  ): Promise<VerifyReport>;
  delete(agentId: string, tenant: string | undefined, id: string): Promise<DeleteResult>;
  /**
   * Memory as of a snapshot (docs/browse.md): the tree at a browse path (`''`, `memdir/…`, `sqlite`,
   * `sqlite/<db>`, `state`). Read-only; only what the path needs is read. Entries sorted by name bytes;
   * `limit` pages them (`next_cursor` → `cursor`), else every entry.
   */
  ls(
    agentId: string,
    tenant: string | undefined,
    id: string,
    path?: string,
    opts?: LsOptions & { decryptIdentity?: string },
  ): Promise<LsResult>;
  /** A memory file, a state value, a table's rows (`sqlite/<db>/<table>`) or a database's (`sqlite/<db>`). */
  cat(
    agentId: string,
    tenant: string | undefined,
    id: string,
    path: string,
    opts?: CatOptions & { decryptIdentity?: string },
  ): Promise<CatResult>;
  /** Which snapshots hold a text (or regex match), where, and when it first appeared and was gone. */
  find(req: FindRequest): Promise<FindResult>;
  export(
    agentId: string,
    tenant: string | undefined,
    id: string,
    target: string,
    opts?: ExportOptions,
  ): Promise<ExportResult>;
}
