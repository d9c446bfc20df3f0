// Owns `import` when the store is a repository: the bundle (v1 included) becomes a snapshot of the
// target agent in the repository (ingest.ts) — alone with `storeOnly` (nothing live changes, so the
// target may have memory and the restore gate does not apply), or first, before the bundle is restored
// as that agent as `import` always did (a refused restore forgets the snapshot again), both under one hold
// of the agent lock: a record written before the snapshot is stored and removed when the restore commits
// lets the recovery forget it after a kill (docs/restore.md, "Crash safety"). Same agent and
// tenant (a move between hosts): the snapshot keeps the bundle's id, label, time and creator, and the
// same bundle imported twice is stored once. Another agent or tenant (a clone), or an id another
// snapshot of the agent holds (in the repository, or another bundle of its own not migrated yet): a
// new id, the time of the import, created_by `import` and the bundle's label. Its origin names the
// bundle either way. An encrypted bundle goes only into an encrypted repository (ingest.ts
// encryptedIntoPlaintext, migrate's rule), refused before anything is staged or created.

import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { type Identity, loadIdentities } from '../crypto/age.js';
import type { Manifest } from '../format/manifest.js';
import { readManifestOnly } from '../format/reader.js';
import { type TrustPolicy, trustPolicy } from '../format/signature.js';
import {
  asSnapshotError,
  InvalidInputError,
  IoError,
  JournalDamagedError,
  NotFoundError,
  RestoreRefusedError,
} from '../model/errors.js';
import {
  DEFAULT_TENANT,
  newSnapshotId,
  parseSnapshotId,
  validateAgentId,
  validateTenant,
} from '../model/ids.js';
import type { ProgressListener, RestoreReport, RestoreRequest, SignatureInfo } from '../model/types.js';
import type { HeldRepoLock } from '../repository/locks.js';
import type { RepoManifest } from '../repository/manifest.js';
import type { Repository } from '../repository/repository.js';
import { type ListingMeta, listSnapshots, loadSnapshot, saveListing } from '../repository/snapshots.js';
import { writeFileAtomic } from '../store/atomic.js';
import { type BundleFile, bundleFiles } from '../store/catalog.js';
import { STAGING_PREFIX } from '../store/paths.js';
import { faultPoint } from '../util/faults.js';
import { makeDirs } from '../util/make-dirs.js';
import { captureTime } from './capture-time.js';
import {
  encryptedIntoPlaintext,
  fromBundle,
  isEncryptedBundle,
  originOf,
  type StoreTarget,
  stageBundle,
  storedDifference,
  storeStaged,
} from './ingest.js';
import type { LocalSnapshotter } from './local.js';
import { restoreAgent } from './restore.js';
import { importedBundleFile } from './restore-source.js';

export interface StoreBundleRequest {
  /** Path of the bundle (any path). */
  bundle: string;
  /** The agent (and tenant) the snapshot belongs to. */
  agentId: string;
  tenant?: string;
  /** age identity file that opens an encrypted bundle. */
  decryptIdentity?: string;
  /** Trusted public keys; default: the snapshotter's (as restore). */
  trust?: string[];
  /** Refuse a bundle without a valid signature by a trusted key (default as restore). */
  requireSignature?: boolean;
  onProgress?: ProgressListener;
}

export interface StoredBundle {
  /** The repository snapshot that holds the bundle. */
  snapshot: ListingMeta;
  /** `new`, or `already_present` when this bundle was stored before (same agent, same id). */
  stored: 'new' | 'already_present';
  /** The bundle's own snapshot id, agent and tenant. */
  imported_from: { snapshot_id: string; agent_id: string; tenant: string };
  /** The bundle's signature as checked. */
  signature?: SignatureInfo;
}

/** The trust restore applies to a request (its keys, or the snapshotter's: `own`). */
export function requestTrust(
  own: TrustPolicy,
  req: { trust?: string[]; requireSignature?: boolean },
): TrustPolicy {
  return req.trust !== undefined || req.requireSignature !== undefined
    ? trustPolicy(
        req.trust ?? own.keys.map((k) => k.publicKey),
        req.requireSignature ?? (req.trust?.length ? true : own.required),
      )
    : own;
}

/**
 * Lists a stored snapshot whose listing entry was lost (a kill between manifest and listing), under the
 * shared repository lock `lock` the caller holds: a prune removes an unlisted manifest and its data, so
 * the manifest must still be stored once the lock is held (NotFoundError otherwise), and the lock must
 * still be this operation's before the entry is written (stop 55: `import --store-only` listed a
 * snapshot a prune was removing, and reported it present).
 */
export async function ensureListed(
  s: LocalSnapshotter,
  repo: Repository,
  m: RepoManifest,
  lock: HeldRepoLock,
): Promise<ListingMeta> {
  const listed = (await listSnapshots(repo, { agentId: m.agent_id, tenant: m.tenant })).find(
    (x) => x.id === m.snapshot_id,
  );
  if (listed) return listed;
  await loadSnapshot(repo, m.snapshot_id);
  await lock.check();
  const meta = s.repository.metaOf(m);
  await saveListing(repo, meta);
  return { ...meta, pinned: false };
}

/**
 * Reports a snapshot an import stored (`new`; one already present was announced when it was stored) as
 * every snapshot is: the observers' `snapshot` record, so the `created` event and the snapshot metrics.
 */
export function announceStored(s: LocalSnapshotter, stored: StoredBundle, started: number): void {
  if (stored.stored !== 'new') return;
  const { pinned: _pinned, ...meta } = stored.snapshot;
  s.observe({
    op: 'snapshot',
    agentId: meta.agent_id,
    tenant: meta.tenant,
    createdBy: meta.created_by ?? 'import',
    outcome: 'ok',
    meta,
    durationMs: performance.now() - started,
  });
}

/**
 * Whether the bundle file `held` is the bundle of manifest `m` (same id and seals, as fromBundle
 * compares a stored snapshot's origin); false when its manifest cannot be read.
 */
async function sameBundle(
  held: BundleFile,
  m: Pick<Manifest, 'snapshot_id' | 'bundle_sha256' | 'manifest_seal'>,
  identities: readonly Identity[] | undefined,
): Promise<boolean> {
  try {
    const h = (await readManifestOnly(held.path, held.encrypted ? identities : undefined)).parsed.manifest;
    return (
      h.snapshot_id === m.snapshot_id &&
      h.bundle_sha256 === m.bundle_sha256 &&
      h.manifest_seal === m.manifest_seal
    );
  } catch {
    return false;
  }
}

/** `import --store-only`: stores the bundle under the agent lock. */
export async function storeBundle(s: LocalSnapshotter, req: StoreBundleRequest): Promise<StoredBundle> {
  checkRepositoryStore(s);
  const agentId = validateAgentId(req.agentId);
  const tenant = validateTenant(req.tenant ?? DEFAULT_TENANT);
  await importedBundleFile(req.bundle);
  await makeDirs(s.layout.snapshotsDir(tenant, agentId));
  const lock = await s.lockAgent(agentId, tenant, 'import');
  try {
    await s.recoverInterrupted(agentId, tenant);
    return await storeBundleLocked(s, req);
  } finally {
    lock.release();
  }
}

function checkRepositoryStore(s: LocalSnapshotter): void {
  if (!s.usesRepository())
    throw new InvalidInputError(
      'storing a bundle needs the repository store (store.format: repository, or `nexo-memory migrate` first)',
    );
}

/** What an import's record holds: the snapshot it stored and has not restored yet. */
export interface ImportRecord {
  snapshot_id: string;
  bundle: string;
  created_at_ms: number;
}

/**
 * Stores the bundle (the caller holds the agent lock). With `recordPath`, a snapshot stored new is
 * first written there (ImportRecord): a full import's record, which its restore removes at the commit.
 */
async function storeBundleLocked(
  s: LocalSnapshotter,
  req: StoreBundleRequest,
  recordPath?: string,
): Promise<StoredBundle> {
  const agentId = validateAgentId(req.agentId);
  const tenant = validateTenant(req.tenant ?? DEFAULT_TENANT);
  const bundle = resolve(req.bundle);
  const identities = req.decryptIdentity ? loadIdentities(req.decryptIdentity) : undefined;
  const policies = await s.policies();
  const trust = requestTrust(policies.trust, req);
  const signingKey = policies.signingKey(); // an unreadable key fails before anything is written
  const dir = s.layout.snapshotsDir(tenant, agentId);
  await makeDirs(dir);
  const staging = join(dir, `${STAGING_PREFIX}${newSnapshotId()}`);
  try {
    // Refused before anything is staged or a repository created: a new one is encrypted when recipients
    // are configured (as migrate decides).
    if (await isEncryptedBundle(bundle)) {
      const encrypted = (await s.repository.exists(true))
        ? (await s.repository.openForWriting(s.recipients, req.decryptIdentity)).encrypted
        : s.recipients.length > 0;
      const refusal = encryptedIntoPlaintext(true, encrypted);
      if (refusal) throw refusal;
    }
    await mkdir(staging, { mode: 0o700 });
    const b = await stageBundle(bundle, staging, {
      ...(identities ? { identities } : {}),
      trust,
      ...(req.onProgress ? { onProgress: req.onProgress } : {}),
    });
    const m = b.manifest;
    const repo = await s.repository.openForWriting(s.recipients, req.decryptIdentity);
    const refusal = encryptedIntoPlaintext(b.report.age_protected, repo.encrypted);
    if (refusal) throw refusal;
    const imported_from = { snapshot_id: m.snapshot_id, agent_id: m.agent_id, tenant: m.tenant };
    const signature = b.report.signature;
    const result = (snapshot: ListingMeta, stored: StoredBundle['stored']): StoredBundle => ({
      snapshot,
      stored,
      imported_from,
      ...(signature ? { signature } : {}),
    });
    // Same agent and tenant: the bundle's own id, unless another snapshot holds it — one in the
    // repository (not stored from this bundle), or another bundle of the agent (a 0.2 store's, not
    // migrated yet: two snapshots of one id would hide one another, and migrate could never move that
    // bundle). That very bundle (same seals) keeps its id: the snapshot is then in both stores, as
    // between migrate's steps, and migrate finishes the move.
    const same = m.agent_id === agentId && m.tenant === tenant;
    let keepId = same;
    if (same) {
      // Under the shared lock: a prune cannot remove the stored snapshot (unlisted, its entry lost)
      // between this look and its listing (stop 55).
      const existing = await s.repository.locked(repo, false, 'import', async (lock) => {
        const found = await loadSnapshot(repo, m.snapshot_id).catch((err: unknown) => {
          if (err instanceof NotFoundError) return undefined;
          throw err;
        });
        if (!found) return undefined;
        const e = found.manifest;
        // the same bundle by its origin, and by what it records (an origin is copied by anyone)
        if (!fromBundle(e, m) || storedDifference(e, m) !== undefined) return 'another' as const;
        if (e.agent_id !== agentId || e.tenant !== tenant) return 'another' as const;
        return ensureListed(s, repo, e, lock);
      });
      if (existing === 'another') keepId = false;
      else if (existing) return result(existing, 'already_present');
      else {
        const held = (await bundleFiles(dir)).find((f) => f.id === m.snapshot_id);
        if (held && !(await sameBundle(held, m, identities))) keepId = false;
      }
    }
    // a new id is a new snapshot of the agent (as a clone's): made now, by the import, and dated as every
    // new snapshot is (capture-time.ts: never before the agent's newest one, which a clock ahead on
    // another host may have dated later than this clock says; under the agent lock): stop 63
    const createdAtMs = keepId
      ? m.created_at_ms
      : captureTime(s.now(), await s.newestStored(agentId, tenant)).createdAtMs;
    const target: StoreTarget = keepId
      ? {
          id: m.snapshot_id,
          agentId,
          tenant,
          ...(m.label !== undefined ? { label: m.label } : {}),
          createdAtMs: m.created_at_ms,
          createdBy: m.created_by,
        }
      : {
          id: newSnapshotId(),
          agentId,
          tenant,
          ...(m.label !== undefined ? { label: m.label } : {}),
          createdAtMs,
          createdBy: 'import',
        };
    if (recordPath) {
      // before the snapshot exists: a kill from here until the restore commits leaves the record, and
      // the recovery forgets the snapshot (docs/restore.md, "Crash safety")
      const record: ImportRecord = { snapshot_id: target.id, bundle, created_at_ms: Date.now() };
      await makeDirs(dirname(recordPath));
      await writeFileAtomic(recordPath, `${JSON.stringify(record)}\n`);
    }
    const stored = await storeStaged(s.repository, repo, b, target, originOf(b, 'import'), signingKey);
    faultPoint('import.stored');
    return result(stored, 'new');
  } catch (err) {
    throw asSnapshotError(err, `storing ${bundle}`);
  } finally {
    await rm(staging, { recursive: true, force: true }).catch(() => {});
  }
}

/** The import record at `path`, or undefined when there is none; one that cannot be read is damage. */
export async function readImportRecord(path: string): Promise<ImportRecord | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new IoError(`reading import record ${path}`, err);
  }
  try {
    const r = JSON.parse(text) as Partial<ImportRecord> | null;
    if (typeof r?.snapshot_id === 'string' && parseSnapshotId(r.snapshot_id) === r.snapshot_id)
      return r as ImportRecord;
  } catch {}
  throw new JournalDamagedError(
    path,
    'not an import record: move it aside and list the agent (its import may have left a snapshot to delete)',
  );
}

/**
 * `import` into a repository store: the bundle is stored as a snapshot of the target agent, then
 * restored as that agent; when the restore fails, the stored snapshot is forgotten again.
 */
export async function importIntoRepository(s: LocalSnapshotter, req: RestoreRequest): Promise<RestoreReport> {
  const agentId = validateAgentId(req.agentId);
  const tenant = validateTenant(req.tenant ?? DEFAULT_TENANT);
  if (req.bundle === undefined) throw new InvalidInputError('import takes a bundle file (bundle)');
  const started = performance.now();
  if (!req.import?.force && (await s.agentExists(agentId, tenant)))
    throw new RestoreRefusedError(
      `agent ${agentId} (tenant ${tenant}) already has memory; pass --force to replace it`,
    );
  checkRepositoryStore(s);
  const bundle = req.bundle;
  const recordPath = s.layout.importRecordPath(tenant, agentId);
  let stored: StoredBundle | undefined;
  // Stored and restored under one hold of the agent lock (restore.ts calls these): the import record
  // written before the snapshot is stored is removed when the restore commits, so a kill anywhere in
  // between leaves it, and the recovery (the next operation on the agent, or `recover`) forgets the
  // snapshot again, as a restore that fails here does.
  const report = await restoreAgent(s, req, {
    beforeRestore: async () => {
      stored = await storeBundleLocked(
        s,
        {
          bundle,
          agentId,
          tenant,
          ...(req.decryptIdentity ? { decryptIdentity: req.decryptIdentity } : {}),
          ...(req.trust ? { trust: req.trust } : {}),
          ...(req.requireSignature !== undefined ? { requireSignature: req.requireSignature } : {}),
          ...(req.onProgress ? { onProgress: req.onProgress } : {}),
        },
        recordPath,
      );
    },
    afterCommit: () => rm(recordPath, { force: true }),
    onFailure: async () => {
      if (stored?.stored !== 'new' || !existsSync(recordPath)) return; // none stored, or committed
      await s.repository.forget(stored.snapshot.id, { agentId, tenant });
      await rm(recordPath, { force: true });
    },
  });
  // announced once it stays: a refused restore forgets the snapshot again
  announceStored(s, stored!, started);
  return { ...report, stored_snapshot: stored!.snapshot.id };
}
