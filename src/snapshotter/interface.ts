// Owns the MemorySnapshotter port: the operations every backend offers, as the original's trait
// (§1.2). Restore and diff join it as their issues land.

import type {
  DeleteResult,
  ExportResult,
  ProgressListener,
  SnapshotMeta,
  SnapshotRequest,
  VerifyReport,
} from '../model/types.js';

export interface VerifyRequestOptions {
  deep?: boolean;
  onProgress?: ProgressListener;
}

export interface ExportOptions {
  force?: boolean;
  onProgress?: ProgressListener;
}

export interface MemorySnapshotter {
  snapshot(req: SnapshotRequest): Promise<SnapshotMeta>;
  /** Newest first. */
  list(agentId: string, tenant?: string): Promise<SnapshotMeta[]>;
  /** Any bundle path; no agent or tenant confinement. */
  verify(bundlePath: string, opts?: VerifyRequestOptions): Promise<VerifyReport>;
  delete(agentId: string, tenant: string | undefined, id: string): Promise<DeleteResult>;
  export(
    agentId: string,
    tenant: string | undefined,
    id: string,
    target: string,
    opts?: ExportOptions,
  ): Promise<ExportResult>;
}
