// Owns the on-disk layout of the snapshot store under a state root:
//   <state_root>/tenants/<tenant>/snapshots/<agent>/<id>.tar.zst[.age]   bundle
//                                                 …/<bundle>.sha256        sibling (bare hex)
//                                                 …/<bundle>.meta.json     sidecar (list cache)
//                                                 …/<bundle>.partial       transient while packing
//                                                 …/.staging-<id>/         transient capture dir
//   <state_root>/tenants/<tenant>/locks/<agent>.lock                        agent lock
//   <state_root>/tenants/<tenant>/locks/<agent>.gate                        write gate
//   <state_root>/tenants/<tenant>/locks/<agent>.gate.wanted                 held while the gate is waited for
//   <state_root>/tenants/<tenant>/locks/<agent>.readers                     exports in progress
//   <state_root>/tenants/<tenant>/locks/<agent>.<kind>.last                 last automatic snapshot of a kind
//   <state_root>/tenants/<tenant>/journals/<agent>.restore.json             restore in progress
// Callers pass validated ids; every path is re-checked to stay under the state root.

import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { CrossTenantError } from '../model/errors.js';

export const BUNDLE_EXT = '.tar.zst';
export const ENCRYPTED_EXT = '.tar.zst.age';
export const SIBLING_EXT = '.sha256';
export const SIDECAR_EXT = '.meta.json';
export const PARTIAL_EXT = '.partial';
export const STAGING_PREFIX = '.staging-';
export const RESTORE_WORK_PREFIX = '.restore-staging-';
export const JOURNAL_EXT = '.restore.json';
/** An import's record that it stored a snapshot it has not restored yet (snapshotter/import.ts). */
export const IMPORT_RECORD_EXT = '.import.json';
/** The anchor of an agent's last committed restore on this state root (restore/undo-record.ts). */
export const UNDO_RECORD_EXT = '.undo.json';

/**
 * The snapshot store's own directories under its state root: the bundle store's tenants (bundles,
 * locks, journals), the repository, its master-key pins and the remote stores' caches.
 */
export const STORE_DIRS = ['tenants', 'repository', 'repository-keys', 'cache'] as const;

/** Whether `path` is `dir` or inside it (both absolute and resolved the same way). */
export function isWithin(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || !(rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel));
}

const BUNDLE_NAME = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.tar\.zst(\.age)?$/;

function confined(root: string, path: string): string {
  const rel = relative(root, path);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) throw new CrossTenantError(path);
  return path;
}

export class StoreLayout {
  readonly root: string;
  constructor(stateRoot: string) {
    this.root = resolve(stateRoot);
  }

  tenantDir(tenant: string): string {
    return confined(this.root, join(this.root, 'tenants', tenant));
  }

  snapshotsDir(tenant: string, agentId: string): string {
    return confined(this.root, join(this.tenantDir(tenant), 'snapshots', agentId));
  }

  locksDir(tenant: string): string {
    return join(this.tenantDir(tenant), 'locks');
  }

  agentLockPath(tenant: string, agentId: string): string {
    return confined(this.root, join(this.locksDir(tenant), `${agentId}.lock`));
  }

  /** The journal of a restore in progress (see restore/journal.ts). */
  journalPath(tenant: string, agentId: string): string {
    return confined(this.root, join(this.tenantDir(tenant), 'journals', `${agentId}${JOURNAL_EXT}`));
  }

  /**
   * Written by an import into a repository before it stores the snapshot, removed when its restore
   * commits: found by the recovery without a committed restore, the snapshot is forgotten again.
   */
  importRecordPath(tenant: string, agentId: string): string {
    return confined(this.root, join(this.tenantDir(tenant), 'journals', `${agentId}${IMPORT_RECORD_EXT}`));
  }

  /** The anchor of the agent's last restore committed through this state root: what `--undo` restores. */
  undoRecordPath(tenant: string, agentId: string): string {
    return confined(this.root, join(this.tenantDir(tenant), 'journals', `${agentId}${UNDO_RECORD_EXT}`));
  }

  /** Held shared while a bundle is read out of the store (export), exclusively by delete and gc. */
  readersLockPath(tenant: string, agentId: string): string {
    return confined(this.root, join(this.locksDir(tenant), `${agentId}.readers`));
  }

  /** When the agent's last automatic snapshot of `kind` (`auto-…`) was taken (a throttle's memory). */
  lastTakenPath(tenant: string, agentId: string, kind: string): string {
    return confined(this.root, join(this.locksDir(tenant), `${agentId}.${kind}.last`));
  }

  writeGatePath(tenant: string, agentId: string): string {
    return confined(this.root, join(this.locksDir(tenant), `${agentId}.gate`));
  }

  bundlePath(tenant: string, agentId: string, id: string, encrypted = false): string {
    return join(this.snapshotsDir(tenant, agentId), bundleFileName(id, encrypted));
  }
}

export const bundleFileName = (id: string, encrypted = false): string =>
  `${id}${encrypted ? ENCRYPTED_EXT : BUNDLE_EXT}`;
export const siblingPathOf = (bundlePath: string): string => `${bundlePath}${SIBLING_EXT}`;
export const sidecarPathOf = (bundlePath: string): string => `${bundlePath}${SIDECAR_EXT}`;

/** Parses a file name of the store: the snapshot id and whether it is encrypted, or undefined. */
export function parseBundleFileName(name: string): { id: string; encrypted: boolean } | undefined {
  const m = BUNDLE_NAME.exec(name);
  return m ? { id: m[1]!, encrypted: m[2] !== undefined } : undefined;
}
