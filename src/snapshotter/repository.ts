// Owns the snapshotter's repository store (docs/repository.md): where it lives under the state root,
// opening it (created on the first snapshot), and the operations on it — taking a snapshot (capture
// under the write gate, history recorded as refs, only new chunks written; after the agent's first
// snapshot each database copy's chunks are planned as soon as it is made, and the index and the
// previous manifest are read, while the other copies run; the first snapshot into an empty repository
// has its copies packed ahead on the copy threads), listing, finding by id or
// prefix, verifying one snapshot, forgetting, pinning, check and prune — each under the repository
// lock that prune's exclusive lock excludes (an index loaded before is refreshed once the lock is held),
// and what retention needs without the identity (the whole listing, forgetting without that lock).
// local.ts decides which store an operation goes to. The repository may be remote (`repo`: nats://,
// s3://, or another directory; backend/open.ts): its one backend is opened here, on first use (a
// snapshot opens it while the agent is captured), and shared by every handle; staging, journals, agent
// locks and the write gate stay under the state root, and a remote repository's cache goes to
// `<state_root>/cache/`. The repository machinery is imported by the operations that use it, not with
// this module: a state root without a repository lists without loading it (CLI start-up).

import { existsSync } from 'node:fs';
import { mkdir, rm, statfs, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Backend } from '../backend/backend.js';
import { type BackendSettings, parseRepoLocation, type RepoLocation } from '../backend/open.js';
import type { BackendObserver } from '../backend/remote.js';
import type { CopiedDb, captureAgent } from '../capture/capture.js';
import type { Identity } from '../crypto/age.js';
import type { SigningKey } from '../crypto/sign.js';
import { CURRENT_SCHEMA, ZERO_OID } from '../format/constants.js';
import type { Manifest, RedactionReport } from '../format/manifest.js';
import type { TrustPolicy } from '../format/signature.js';
import {
  asSnapshotError,
  BundleDamagedError,
  ConfigError,
  EncryptionError,
  InvalidInputError,
  NotFoundError,
  ObjectNotFoundError,
  RepositoryLockedError,
  StoreUnavailableError,
  UnknownAgentError,
} from '../model/errors.js';
import { idHasPrefix, newSnapshotId, parseSnapshotId, parseSnapshotPrefix } from '../model/ids.js';
import type { DbName, DeepReport, ProgressListener, VerifyReport } from '../model/types.js';
import type { RedactionPolicy } from '../policy/redaction/scan.js';
import type { CheckOptions, CheckReport } from '../repository/check.js';
import type { ChunkPlan, PlanJob } from '../repository/chunk-plan.js';
import type { PreviousHistory } from '../repository/git-history.js';
import type { HeldRepoLock } from '../repository/locks.js';
import type { ParsedRepoManifest, RepoManifest } from '../repository/manifest.js';
import type { PruneOptions, PruneReport } from '../repository/prune.js';
import type { Repository } from '../repository/repository.js';
import type { ListingMeta } from '../repository/snapshots.js';
import type { RepoVerifyOptions, RepoVerifyResult } from '../repository/verify-snapshot.js';
import type { SqliteJobs } from '../sqlite/worker.js';
import { metaFromManifest, skippedOf } from '../store/catalog.js';
import { STAGING_PREFIX } from '../store/paths.js';
import { toolVersions } from '../util/version.js';
import { captureTime, clockBehindNote, clockBehindOf } from './capture-time.js';
import type { LocalSnapshotter } from './local.js';

/**
 * Test seam (stop 47): `beforeSave` runs after a snapshot's last lock check and before its manifest is
 * saved — the window a pause past the lock staleness can fall in. Unset in production.
 */
export const publishHooks: { beforeSave?: () => Promise<void> } = {};

/**
 * After a snapshot's manifest and listing entry are saved: when its repository lock was lost meanwhile
 * (removed or judged stale by another process, or not refreshed in time), a prune may have removed
 * packs the new manifest references. Every blob it references (chunk lists read again) must still be in
 * the index, in a pack that is stored; if so the snapshot stays (with a warning), else it is forgotten
 * (listing entry first, then its manifest) and the snapshot fails with REPOSITORY_LOCKED.
 */
async function confirmPublished(
  repo: Repository,
  lock: HeldRepoLock,
  manifest: RepoManifest,
  warn: (message: string) => void,
): Promise<void> {
  try {
    await lock.check();
    return;
  } catch (err) {
    if (!(err instanceof RepositoryLockedError)) throw err;
  }
  const id = manifest.snapshot_id;
  const missing = await missingReferences(repo, manifest);
  if (missing === 0) {
    warn(
      `snapshot ${id}: the repository lock was lost while it was written (removed by another process, or not refreshed in time); everything it references is still stored, so it is kept`,
    );
    return;
  }
  const { forgetSnapshot } = await import('../repository/snapshots.js');
  let left = '';
  try {
    await forgetSnapshot(repo, id);
  } catch (err) {
    left = ` (its entry could not be removed: ${(err as Error).message}; check reports it, delete or prune removes it)`;
  }
  throw new RepositoryLockedError(
    `the lock was lost while snapshot ${id} was written, and ${missing} blob(s) it needed were removed by a prune: nothing was published${left}; run the snapshot again`,
    { snapshot_id: id, missing_blobs: missing },
  );
}

/** How many blobs `manifest` references that are not in the index (reloaded) or whose pack is not stored. */
async function missingReferences(repo: Repository, manifest: RepoManifest): Promise<number> {
  const { ReferenceSet } = await import('../repository/references.js');
  const index = await repo.loadIndex(); // rebuilt when a prune replaced index files
  const stored = new Set<string>();
  for await (const p of repo.backend.list('packs')) stored.add(p.name);
  const refs = new ReferenceSet(repo);
  try {
    await refs.addManifest(manifest);
  } catch (err) {
    // a chunk list that cannot be read any more: at least that one is gone
    if (err instanceof BundleDamagedError || err instanceof ObjectNotFoundError)
      return Math.max(1, countMissing());
    throw err;
  }
  return countMissing();
  function countMissing(): number {
    let n = 0;
    for (const b of refs.blobs) {
      const at = index.get(b);
      if (!at || !stored.has(at.pack)) n++;
    }
    return n;
  }
}

/**
 * The live databases (bytes in all) up to which the first snapshot into an empty repository packs its
 * copies ahead on the copy threads. Beyond it the snapshot is bound by the disk more than by the CPU,
 * and packing ahead held more memory at the peak (the 2.3 GB agent: 165 MB against 146 MB stored in
 * one pass, docs/operations.md "stop 53"): stored in one pass, with its compression thread.
 */
export const PACK_AHEAD_MAX_BYTES = 512 * 1024 * 1024;

/**
 * Whether a disk with `freeBytes` free (as the staging directory's file system says when the first
 * copies are made) has room to pack `liveBytes` of live databases ahead: the copies not made yet, the
 * pack files written beside them until each is saved, and the packs they are saved as, each at most
 * the databases' size; three times it, or they are stored in one pass. Packed ahead on a disk with little
 * more room than one pass needs, a copy, or git's pack, failed where one pass succeeded (a 14 MB agent
 * on tmpfs roots of 16-17 MiB: 2 runs of 6 failed, none in one pass; stop 54).
 */
export function packAheadFits(freeBytes: number, liveBytes: number): boolean {
  return freeBytes >= 3 * liveBytes;
}

export const STORE_FORMATS = ['auto', 'repository', 'bundles'] as const;
export type StoreFormat = (typeof STORE_FORMATS)[number];

/** NEXO_MEMORY_STORE_FORMAT, when set (it overrides the config file's `store.format`). */
export function storeFormatFromEnv(): StoreFormat | undefined {
  const env = process.env.NEXO_MEMORY_STORE_FORMAT;
  if (env === undefined || env === '') return undefined;
  if (!(STORE_FORMATS as readonly string[]).includes(env))
    throw new ConfigError(
      `NEXO_MEMORY_STORE_FORMAT must be one of ${STORE_FORMATS.join(', ')}, got ${JSON.stringify(env)}`,
    );
  return env as StoreFormat;
}

/** The repository of a state root: `<state_root>/repository/`. */
export const repositoryRoot = (stateRoot: string): string => join(resolve(stateRoot), 'repository');

/** One snapshot's steps, in either store (LocalSnapshotter.snapshotLocked); the caller holds the agent lock. */
export interface RepoSnapshotParams {
  agentId: string;
  tenant: string;
  label: string | undefined;
  createdBy: string;
  memdir: string;
  sqliteDir: string;
  /** The agent's snapshot directory (staging lives there). */
  dir: string;
  /** age recipients; empty for a plaintext snapshot. */
  recipients: readonly string[];
  /** Signs the manifest when given. */
  signingKey: SigningKey | undefined;
  /** Redact the staging with this policy; absent for an exact copy (anchors are never redacted). */
  redact?: RedactionPolicy;
  onProgress: ProgressListener | undefined;
  /** The caller holds the agent's write gate closed (a restore's anchor): the capture does not close it. */
  gateHeld?: boolean;
}

/** Where a RepositoryStore's repository is and how its backend is opened (LocalSnapshotterOptions). */
export interface RepositoryPlace {
  /** A path, nats://… or s3://… (default `<state_root>/repository`). */
  repo?: string;
  settings?: BackendSettings;
  observer?: (backend: string) => BackendObserver;
}

/** Whether the store holds object `id` of `type` (one stat; a missing one is no error). */
const present = (backend: Backend, type: 'listing' | 'pins', id: string): Promise<boolean> =>
  backend.stat({ type, name: id }).then(
    () => true,
    (err: unknown) => {
      if (err instanceof ObjectNotFoundError) return false;
      throw err;
    },
  );

export class RepositoryStore {
  /** Where the repository is, as shown in messages and `bundle_path` (never a secret). */
  readonly root: string;
  readonly place: RepoLocation;
  private opened: Promise<Repository> | undefined;
  private backendP: Promise<Backend> | undefined;
  /** Whether backendP was opened to create missing remote buckets. */
  private backendCreates = false;
  /** A remote repository's `config` was seen (exists() asks the store once per handle). */
  private seen = false;
  private readonly stateRoot: string;

  constructor(
    private readonly s: LocalSnapshotter,
    stateRoot: string,
    /** age identity file opening an encrypted repository. */
    private readonly identityPath: string | undefined,
    private readonly zstdLevel: number,
    private readonly warn: (message: string) => void,
    private readonly where: RepositoryPlace = {},
  ) {
    this.stateRoot = resolve(stateRoot);
    this.place =
      where.repo !== undefined
        ? parseRepoLocation(where.repo)
        : { kind: 'local', path: repositoryRoot(stateRoot), display: repositoryRoot(stateRoot) };
    this.root = this.place.display;
  }

  /** Whether the repository's place was given (`repo`): then it is the store, whatever the format says. */
  get explicit(): boolean {
    return this.where.repo !== undefined;
  }

  /** Whether the repository is in a remote store (NATS, S3). */
  get remote(): boolean {
    return this.place.kind !== 'local';
  }

  /** Whether a local repository has been created (its config file exists); false for a remote one. */
  existsLocally(): boolean {
    return this.place.kind === 'local' && existsSync(join(this.place.path, 'config', 'config'));
  }

  /**
   * Whether the repository has been created (its config exists): on the file system for a local one;
   * for a remote one, its `config` object (a missing config beside repository data is BUNDLE_DAMAGED,
   * configMissingError) (asked once per handle once found; a missing bucket or stream
   * is StoreUnavailableError STORE_MISSING). `writer`: asked by one that creates the repository when it
   * is not there (migrate): a NATS repository whose buckets are missing is then not created yet (its
   * buckets are the repository, made by its first writer), not an error; an S3 bucket still must exist.
   */
  async exists(writer = false): Promise<boolean> {
    if (this.place.kind === 'local') {
      if (this.existsLocally()) return true;
      if (!existsSync(this.place.path)) return false;
      // a directory without its config file: damage when it holds repository data (configMissingError)
      const { configMissingError } = await import('../repository/repository.js');
      const damage = await configMissingError(await this.storeBackend());
      if (damage) throw damage;
      return false;
    }
    if (this.seen) return true;
    try {
      await (await this.storeBackend()).stat({ type: 'config', name: 'config' });
      this.seen = true;
      return true;
    } catch (err) {
      // A missing bucket is an error (STORE_MISSING), not an empty repository: likely a typo. A missing
      // config beside repository data is damage, never "no repository" (configMissingError).
      if (err instanceof ObjectNotFoundError) {
        const { configMissingError } = await import('../repository/repository.js');
        const damage = await configMissingError(await this.storeBackend());
        if (damage) throw damage;
        return false;
      }
      if (
        writer &&
        this.place.kind === 'nats' &&
        err instanceof StoreUnavailableError &&
        err.code === 'STORE_MISSING'
      )
        return false;
      throw err;
    }
  }

  get location(): string {
    return this.root;
  }

  /**
   * The snapshot id (canonical: lowercase, hyphenated) when `path` is the `bundle_path` of one of this
   * repository's snapshots (`<location>#<id>`, as list and snapshot report it, the whole id in any
   * UUID spelling a plain id takes: any case, braced, `urn:uuid:`, without hyphens), else undefined:
   * such a path names no file. Two spellings of one id name one snapshot, never a file and a snapshot.
   * A prefix is not an id here: it is read as a file name.
   */
  idOf(path: string): string | undefined {
    const prefix = `${this.root}#`;
    return path.startsWith(prefix) ? parseSnapshotId(path.slice(prefix.length)) : undefined;
  }

  /**
   * The repository's backend, opened once and shared (`create`: a remote store may create its buckets,
   * for the first snapshot into a new repository), before the version gate: only for what applies the
   * gate itself (Repository.open) or reads no repository object but the config (exists).
   */
  private storeBackend(create = false): Promise<Backend> {
    if (this.backendP && (this.backendCreates || !create)) return this.backendP;
    const openIt = async (withCreate: boolean): Promise<Backend> => {
      const { openBackend } = await import('../backend/open.js');
      const kind = this.place.kind;
      return openBackend(this.place, {
        ...(this.where.settings ?? {}),
        ...(kind !== 'local' && this.where.observer ? { observer: this.where.observer(kind) } : {}),
        cacheRoot: join(this.stateRoot, 'cache'),
        ...(withCreate ? { create: true } : {}),
      });
    };
    const previous = this.backendP;
    this.backendCreates = create;
    const p = previous
      ? previous.catch(() => openIt(true)) // opened without create: it serves if it opened at all
      : openIt(create);
    this.backendP = p.catch((err: unknown) => {
      if (this.backendP === guarded) this.backendP = undefined;
      throw err;
    });
    const guarded = this.backendP;
    return guarded;
  }

  /**
   * The repository's backend once the repository's version passed the gate (checkRepositoryVersion:
   * SCHEMA_TOO_NEW for a repository a newer version wrote), for every path that reads or writes the
   * repository without opening it (listing, pins, retention's forgetting; stop 47: `list`, `pin` and
   * `unpin` used it ungated). Checked at each call (one read of the config: a local file, or a remote
   * repository's cached copy), so a long-lived handle (the daemon's) sees a repository upgraded meanwhile.
   */
  async backendFor(): Promise<Backend> {
    await this.dropIfReplaced();
    const backend = await this.storeBackend();
    const { checkRepositoryVersion } = await import('../repository/version-gate.js');
    await checkRepositoryVersion(backend);
    return backend;
  }

  /**
   * Forgets the backend and the repository this handle opened when its cache found the repository
   * replaced behind it (Backend.replacedBehind: a read raised STORE_REPLACED), so the next operation (a
   * daemon's) opens the store's repository afresh.
   */
  private async dropIfReplaced(): Promise<void> {
    const p = this.backendP;
    const b = p && (await p.catch(() => undefined));
    if (!b?.replacedBehind || this.backendP !== p) return;
    this.backendP = undefined;
    this.opened = undefined;
    this.seen = false;
    await b.close().catch(() => {});
  }

  /** Closes the backend (a remote store's connections). The store can be opened again afterwards. */
  async close(): Promise<void> {
    const p = this.backendP;
    this.backendP = undefined;
    this.opened = undefined;
    if (p) await (await p.catch(() => undefined))?.close();
  }

  /**
   * Where this state root pins the master key of each encrypted repository it opens (per repository id,
   * on first use: repository/key-pins.ts).
   */
  private get keyPins(): string {
    return join(this.stateRoot, 'repository-keys');
  }

  /** The configured identity file that opens an encrypted repository, if any. */
  get identityFile(): string | undefined {
    return this.identityPath;
  }

  /**
   * The repository to store into: created with `recipients` when there is none; an existing one opened
   * with `identityPath` when given (else the configured identity).
   */
  async openForWriting(recipients: readonly string[], identityPath?: string): Promise<Repository> {
    return identityPath && (await this.exists(true)) ? this.fresh(identityPath) : this.open(true, recipients);
  }

  private async identities(extra?: string): Promise<Identity[] | undefined> {
    const path = extra ?? this.identityPath;
    return path ? (await import('../crypto/age.js')).loadIdentities(path) : undefined;
  }

  /** A new handle on the repository (its own index), opened with `identityPath` or the configured identity. */
  async fresh(identityPath?: string): Promise<Repository> {
    await this.dropIfReplaced();
    const ids = await this.identities(identityPath);
    const { Repository } = await import('../repository/repository.js');
    return Repository.open(await this.storeBackend(), {
      zstdLevel: this.zstdLevel,
      keyPins: this.keyPins,
      ...(ids ? { identities: ids } : {}),
    });
  }

  /** Opens the repository (creating it with `recipients` when `create` and it does not exist). */
  async open(create = false, recipients: readonly string[] = [], identityPath?: string): Promise<Repository> {
    if (identityPath) return this.fresh(identityPath);
    await this.dropIfReplaced();
    if (!this.opened) {
      this.opened = this.identities()
        .then(async (ids) => {
          const opts = {
            zstdLevel: this.zstdLevel,
            keyPins: this.keyPins,
            ...(ids ? { identities: ids } : {}),
          };
          const [{ Repository }, backend] = await Promise.all([
            import('../repository/repository.js'),
            this.storeBackend(create),
          ]);
          return create ? Repository.openOrInit(backend, recipients, opts) : Repository.open(backend, opts);
        })
        .catch((err: unknown) => {
          this.opened = undefined;
          throw err;
        });
    }
    return this.opened;
  }

  /**
   * Runs `fn` under the repository lock (shared unless `exclusive`), waiting up to `waitMs` (default:
   * the lock timeout) for it. An index this handle loaded before is refreshed first: a prune may have
   * replaced it since.
   */
  async locked<T>(
    repo: Repository,
    exclusive: boolean,
    operation: string,
    fn: (lock: HeldRepoLock) => Promise<T>,
    waitMs = this.s.lockTimeoutMs,
  ): Promise<T> {
    const { lockRepository } = await import('../repository/locks.js');
    const lock = await lockRepository(repo.backend, exclusive, operation, waitMs, {
      onUnheld: () =>
        this.warn(
          `the repository ${repo.backend.location} is on a read-only file system (EROFS): this ${operation} reads it without its shared lock (nothing can write there meanwhile)`,
        ),
    }).catch((err: unknown) => this.forgetIfReplaced(err));
    return this.holding(lock, `the repository lock of this ${operation}`, async () => {
      await repo.refreshIndex();
      return fn(lock);
    });
  }

  /**
   * `fn`'s outcome, then `lock` released. A lock that cannot be removed (the store went away) never
   * turns the operation's outcome into its own error: what the operation did, or the error that stopped
   * it, is what is reported, and a warning names `what` was left. The lock left behind is ignored once
   * stale (at once on this host when this process is gone).
   */
  private async holding<T>(lock: HeldRepoLock, what: string, fn: () => Promise<T>): Promise<T> {
    const release = () =>
      lock.release().catch((err: unknown) => {
        this.warn(`${what} was not removed (${(err as Error).message}); it is ignored once stale`);
      });
    let result: T;
    try {
      result = await fn();
    } catch (err) {
      await release();
      throw err;
    }
    await release();
    return result;
  }

  /**
   * Saves a snapshot's manifest and listing entry under the repository lock `lock` (a snapshot's, an
   * import's, a migrate's). Only while the lock holds may the manifest reference what the index showed
   * (prune waits for it), so it is checked first. That check is racy: a pause past the lock staleness
   * between it and the save (a VM suspended, SIGSTOP) lets a prune elsewhere remove the lock and the new
   * packs. So publication is confirmed after the fact (stop 47; imports and migrates too since stop 55):
   * a lock lost by now means the snapshot is kept only when everything it references is still stored;
   * otherwise it is forgotten again and REPOSITORY_LOCKED is thrown.
   */
  async publish(
    repo: Repository,
    lock: HeldRepoLock,
    manifest: RepoManifest,
    json: Buffer,
    meta: ListingMeta,
  ): Promise<void> {
    const { saveSnapshot } = await import('../repository/snapshots.js');
    await lock.check();
    await publishHooks.beforeSave?.();
    await saveSnapshot(repo, manifest, json, meta);
    await confirmPublished(repo, lock, manifest, this.s.warn);
  }

  /**
   * Runs `fn` under the agent's repository lock (stop 47; locks.ts agentScope), waiting up to `waitMs`
   * (default: the lock timeout; 0: one attempt, REPOSITORY_LOCKED when another host's operation on the
   * agent holds it). It serializes, across hosts and state roots, the operations whose checks decide
   * what may go: delete ("the last snapshot", "pinned"), pin ("still listed") and retention's forget.
   * No identity is needed; snapshots and prune neither wait for it nor block it. `fn` checks the lock
   * (HeldRepoLock.check) before the step it decides.
   */
  async lockedAgent<T>(
    agentId: string,
    tenant: string,
    operation: string,
    fn: (lock: HeldRepoLock) => Promise<T>,
    waitMs = this.s.lockTimeoutMs,
  ): Promise<T> {
    const [{ lockRepository, agentScope }, backend] = await Promise.all([
      import('../repository/locks.js'),
      this.backendFor(),
    ]);
    const lock = await lockRepository(backend, false, operation, waitMs, {
      scope: agentScope(tenant, agentId),
    }).catch((err: unknown) => this.forgetIfReplaced(err));
    return this.holding(lock, `the agent's repository lock of this ${operation}`, () => fn(lock));
  }

  /**
   * Rethrows `err`; when it is STORE_REPLACED (the remote repository was replaced behind the cache,
   * which dropped the old one's objects), this handle first forgets the repository it opened and its
   * backend: the next operation (a daemon's) opens the store's repository afresh.
   */
  private async forgetIfReplaced(err: unknown): Promise<never> {
    if (err instanceof StoreUnavailableError && err.code === 'STORE_REPLACED') {
      const p = this.backendP;
      this.backendP = undefined;
      this.opened = undefined;
      this.seen = false;
      await (await p?.catch(() => undefined))?.close().catch(() => {});
    }
    throw err;
  }

  /** The agent's newest snapshot's history, to add to it (none when the history was rewritten). */
  async previousHistory(
    repo: Repository,
    agentId: string,
    tenant: string,
  ): Promise<PreviousHistory | undefined> {
    return (await this.latestHistory(repo, agentId, tenant))?.history;
  }

  /** The agent's newest snapshot (its id) and its history, as previousHistory (`listed`: its listing). */
  private async latestHistory(
    repo: Repository,
    agentId: string,
    tenant: string,
    listed?: Promise<ListingMeta[]>,
  ): Promise<{ id: string; history: PreviousHistory | undefined } | undefined> {
    const [{ listSnapshots, loadSnapshot }, { GIT_HISTORY_KIND }] = await Promise.all([
      import('../repository/snapshots.js'),
      import('../repository/manifest.js'),
    ]);
    const latest = (await (listed ?? listSnapshots(repo, { agentId, tenant })))[0];
    if (!latest) return undefined;
    try {
      const { manifest } = await loadSnapshot(repo, latest.id);
      const git = manifest.artifacts.find((a) => a.kind === GIT_HISTORY_KIND);
      if (!git?.packs || manifest.redactions?.git_history === 'rewritten')
        return { id: latest.id, history: undefined };
      return { id: latest.id, history: { packs: git.packs, refs: manifest.git_refs ?? [] } };
    } catch {
      return { id: latest.id, history: undefined }; // an unreadable previous snapshot: start a new chain
    }
  }

  /**
   * The previous history under the repository lock, from what `early` read before the lock when that
   * still holds: the agent lock (held by the caller since before `early` started) keeps any newer
   * snapshot of the agent from appearing, manifests are immutable, and the snapshot still being listed
   * now, under our lock, keeps prune from removing its data. Otherwise read again.
   */
  private async previousUnderLock(
    repo: Repository,
    agentId: string,
    tenant: string,
    early: Promise<{ id: string; history: PreviousHistory | undefined } | undefined> | undefined,
  ): Promise<PreviousHistory | undefined> {
    const seen = early ? await early.catch(() => null) : null;
    if (seen === undefined) {
      // there was none before the lock: none can have been made since (agent lock), but an import or
      // migrate of a bundle of this agent could have: look again, as before
      return this.previousHistory(repo, agentId, tenant);
    }
    if (seen !== null) {
      const listed = await repo.backend.stat({ type: 'listing', name: seen.id }).then(
        () => true,
        (err: unknown) => {
          if (err instanceof ObjectNotFoundError) return false;
          throw err;
        },
      );
      if (listed) return seen.history;
    }
    return this.previousHistory(repo, agentId, tenant);
  }

  /** The snapshot steps (the caller holds the agent lock). */
  async snapshot(p: RepoSnapshotParams): Promise<ListingMeta> {
    // The copy workers first: they start on the other core while this one loads the steps' modules
    // (~110-130 ms), instead of after them. Each is closed as soon as its copies are made and planned
    // (below); a failure before the steps start closes them here.
    const { liveDatabaseBytes, sqliteRunners } = await import('../sqlite/worker.js');
    const liveBytes = await liveDatabaseBytes(p.sqliteDir);
    const workers = sqliteRunners(liveBytes);
    const closeWorkers = () => Promise.all(workers.map((w) => w.close()));
    // Then what the capture needs; what comes after it (redaction, storing, the manifest: zod's
    // schemas among them) loads while the gate closes and the copies run.
    const [{ captureAgent }, , { packageModule }] = await Promise.all([
      import('../capture/capture.js'),
      this.s.loadWriteGate(),
      import('../util/module-worker.js'),
    ]).catch(async (err: unknown) => {
      await closeWorkers();
      throw err;
    });
    const afterCapture = Promise.all([
      import('../policy/redaction/redact.js'),
      import('../repository/manifest.js'),
      import('../repository/snapshots.js'),
      import('../repository/store-capture.js'),
      import('../crypto/age.js'),
    ]);
    afterCapture.catch(() => {}); // awaited after the capture (a failure there ends the snapshot)
    // The repository opens (a remote one: connecting, and creating its buckets for the first snapshot)
    // while the agent is captured: the capture needs nothing of it, and the gate is held for the capture
    // only. A failure to open is thrown once the capture ended (the gate released, the copies removed).
    const opening = this.open(true, p.recipients);
    opening.catch(() => {}); // awaited after the capture
    const id = newSnapshotId();
    const staging = resolve(p.dir, `${STAGING_PREFIX}${id}`);
    // What storing needs from the repository is read while the copies run, before the repository lock:
    // the index (refreshed under the lock), the agent's snapshots and the newest one's history (checked
    // under the lock).
    /** The index read early: whether it was read (its failure is met again under the lock). */
    let indexEarly: Promise<boolean> | undefined;
    let listed: Promise<ListingMeta[]> | undefined;
    let early: ReturnType<RepositoryStore['latestHistory']> | undefined;
    /** The agent's newest snapshot in either store (the listing above, the bundles' catalogue). */
    let newest: ReturnType<LocalSnapshotter['newestStored']> | undefined;
    const readEarly = () => {
      indexEarly = opening
        .then((repo) => repo.ensureIndex())
        .then(
          () => true,
          () => false,
        );
      toolVersions().catch(() => {}); // `git --version`, asked once, for the manifest
      listed = Promise.all([import('../repository/snapshots.js'), opening]).then(
        ([{ listSnapshots }, repo]) => listSnapshots(repo, { agentId: p.agentId, tenant: p.tenant }),
      );
      listed.catch(() => {});
      // a listing that could not be read early is read again (under the agent lock: no snapshot of it
      // can appear meanwhile), as the previous history is
      const seen = listed;
      newest = this.s.newestStored(
        p.agentId,
        p.tenant,
        seen.catch(() => this.list(p.agentId, p.tenant)),
      );
      newest.catch(() => {}); // awaited before the repository lock
      if (!p.redact) {
        const seen = listed;
        early = opening.then((repo) => this.latestHistory(repo, p.agentId, p.tenant, seen));
        early.catch(() => {});
      }
    };
    // When the agent has snapshots here, most of its chunks are known: a worker's database copies are
    // planned on that worker as soon as its copies are made (chunk-plan.ts), beside the main thread and
    // the other worker's copies, and storing reads back only new chunks. The first snapshot into an
    // empty repository, all of whose chunks are new, has its copies packed ahead there as well (each
    // chunk hashed and compressed on the worker that made the copy, both workers at once), and storing
    // copies the new ones into packs; a database whose packing fails for want of disk is stored in one
    // pass from its copy. Any other first snapshot (whose chunks the repository may hold already: a
    // clone, a fleet), a redacted one (whose copies change after the gate, so nothing would overlap),
    // one whose copies were made on this thread (a small agent), one of databases over
    // PACK_AHEAD_MAX_BYTES and one on a disk without room for it (packAheadFits) store every chunk in
    // one pass.
    let finished = false;
    /** Set when the snapshot has failed: a copy being packed ahead stops at its next chunk. */
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const plans = new Map<DbName, Promise<ChunkPlan | undefined>>();
    const plansOf = new Map<SqliteJobs, Promise<ChunkPlan | undefined>[]>();
    /** Whether the agent has snapshots here (read once the listing is asked for: readEarly). */
    const knownAgent = () =>
      (listed ?? Promise.resolve([])).then(
        (before) => before.length > 0,
        () => false,
      );
    /** Whether the copies are packed ahead (see above): decided once, for every copy and for storing. */
    let packing: Promise<boolean> | undefined;
    const packAhead = () => {
      packing ??= (async () => {
        if (p.redact || liveBytes > PACK_AHEAD_MAX_BYTES || !workers.every((w) => w.threaded)) return false;
        if (await knownAgent()) return false;
        const disk = await statfs(staging);
        if (!packAheadFits(disk.bavail * disk.bsize, liveBytes)) return false;
        // an index that could not be read early is empty here, whatever the repository holds: one pass
        if (!(await indexEarly)) return false;
        return (await opening).index.blobCount === 0;
      })().catch(() => false);
      return packing;
    };
    const planOn = (w: SqliteJobs, copied: readonly CopiedDb[]) => {
      const known = knownAgent();
      const mine: Promise<ChunkPlan | undefined>[] = [];
      plansOf.set(w, mine); // called once per worker, when its copies are all made
      for (const { db, stagedPath } of copied) {
        const plan = Promise.all([known, packAhead()]).then(async ([yes, pack]) => {
          if (finished || !(yes || pack)) return undefined;
          const repo = await opening;
          const planned = w.call<ChunkPlan>(
            packageModule(import.meta.url, '../repository/chunk-plan'),
            'planChunks',
            {
              path: stagedPath,
              params: repo.config.chunker,
              sqlite: true,
              ...(pack
                ? {
                    pack: {
                      level: repo.zstdLevel,
                      prefix: `${stagedPath}.packed`,
                      target: repo.aheadPackTarget,
                      ...(repo.key ? { master: repo.key.master } : {}),
                      stop,
                    },
                  }
                : {}),
            } satisfies PlanJob,
          );
          if (!pack) return planned;
          return planned.then(
            (packed) => {
              // a copy packed ahead is not read again: removed at once (the disk holds less meanwhile)
              discarded.push(unlink(stagedPath).catch(() => {}));
              return packed;
            },
            async (err: unknown) => {
              // the disk full while packing (its pack files removed): the copy is still whole, stored
              // in one pass instead
              if ((err as NodeJS.ErrnoException).code !== 'ENOSPC' || finished) throw err;
              return undefined;
            },
          );
        });
        plan.catch(() => {}); // awaited (and its failure thrown) where the database is stored
        plans.set(db, plan);
        mine.push(plan);
      }
    };
    // The copy workers (started above) run while the gate is being closed; each is closed as soon as its copies are
    // made and planned (a worker's memory, its part of the plans included, goes with it), and a snapshot
    // that plans nothing has them closed before storing starts: a worker thread kept through the store
    // phase held ~10 MB of RSS (its isolate and C heap), the 2.3 GB agent's first snapshot peaked 19 MB
    // higher with both (docs/operations.md, "Peak RSS").
    let workersDone: Promise<unknown> | undefined;
    const discarded: Promise<unknown>[] = [];
    try {
      await mkdir(staging, { mode: 0o700 });
      p.onProgress?.({ phase: 'capture', bytes: 0 });
      const gate = p.gateHeld
        ? { release: async () => {} }
        : await this.s.closeWriteGate(p.agentId, p.tenant, 'snapshot');
      let captured: Awaited<ReturnType<typeof captureAgent>>;
      try {
        const capturing = captureAgent({
          agentId: p.agentId,
          tenant: p.tenant,
          memdir: p.memdir,
          sqliteDir: p.sqliteDir,
          state: this.s.state,
          stagingDir: staging,
          sqlite: workers,
          history: p.redact ? 'bundle' : 'refs',
          allowExternalGit: this.s.allowExternalGit,
          ...(p.redact ? {} : { onWorkerCopied: planOn }),
        });
        capturing.catch(() => {}); // awaited below
        readEarly();
        captured = await capturing;
      } finally {
        await gate.release();
      }
      const [
        { redactStaging },
        { sealRepoManifest },
        _snapshots, // loaded beside the capture: publish saves with it
        { storeCapture },
        { recipientFingerprint },
      ] = await afterCapture;
      workersDone = Promise.all(
        workers.map((w) => Promise.allSettled(plansOf.get(w) ?? []).then(() => w.close())),
      );
      workersDone.catch(() => {}); // awaited below
      const repo = await opening;
      if (p.recipients.length > 0 && !repo.encrypted)
        throw new InvalidInputError(
          'this repository is not encrypted: encryption is chosen when a repository is created (docs/repository.md §7)',
        );
      // An encrypted repository's data is under one master key sealed to the recipients it was created
      // with: other recipients asked for now would change nothing (found in stop 38: a rotation away
      // from a lost key kept encrypting to it, silently, and the new key read nothing).
      const own = repo.config.encryption?.recipients_fingerprint;
      if (p.recipients.length > 0 && own) {
        const asked = [...new Set(p.recipients.map(recipientFingerprint))].sort();
        if (asked.join() !== [...new Set(own)].sort().join())
          throw new InvalidInputError(
            `this repository is encrypted to the recipients it was created with (fingerprints ${own.join(', ')}), ` +
              `not to the ones asked for (${asked.join(', ')}): a repository's recipients cannot change ` +
              '(docs/repository.md §7); keep the configured recipients, or start a new repository for the new ones',
          );
      }
      const known = !p.redact && (await knownAgent());
      const packed = !known && (await packAhead());
      if (!known && !packed) await workersDone.catch(() => {});
      if (!captured.found)
        throw new UnknownAgentError(p.agentId, p.tenant, [
          p.memdir,
          p.sqliteDir,
          this.s.resolver.stateDir(p.agentId, p.tenant),
        ]);
      let redactions: RedactionReport | undefined;
      if (p.redact) {
        p.onProgress?.({ phase: 'redact', bytes: 0 });
        redactions = await redactStaging(p.redact, captured, staging, p.memdir);
      }
      await indexEarly; // before the lock refreshes the index: one load at a time
      const newestBefore = await newest;
      return await this.locked(repo, false, 'snapshot', async (lock) => {
        await repo.ensureIndex();
        const previous = captured.gitRefs
          ? await this.previousUnderLock(repo, p.agentId, p.tenant, early)
          : undefined;
        const writer = repo.writer();
        const stored = await storeCapture(
          repo,
          writer,
          captured,
          p.memdir,
          previous,
          staging,
          p.onProgress,
          known || packed
            ? { byDb: plans, packed, stop: () => Atomics.store(stop, 0, 1) } // (stops what still packs)
            : undefined,
          // a stored copy is removed at once, beside the rest of storing, not at the end
          (path) => discarded.push(unlink(path).catch(() => {})),
        );
        const stats = await writer.finish();
        const time = captureTime(this.s.now(), newestBefore);
        const createdAt = time.createdAtMs;
        const { manifest, json } = sealRepoManifest(
          {
            snapshot_id: id,
            agent_id: p.agentId,
            tenant: p.tenant,
            ...(p.label !== undefined ? { label: p.label } : {}),
            created_at_ms: createdAt,
            created_by: p.createdBy,
            schema_versions: { ...CURRENT_SCHEMA },
            git: captured.git,
            artifacts: stored.artifacts,
            ...(stored.refs.length > 0 ? { git_refs: stored.refs } : {}),
            ...(captured.memdir ? { memdir: captured.memdir } : {}),
            databases: captured.databaseInfo,
            ...(redactions ? { redactions } : {}),
            ...(repo.encrypted
              ? {
                  encryption: {
                    scheme: 'age-envelope',
                    recipients_fingerprint:
                      repo.config.encryption?.recipients_fingerprint ??
                      p.recipients.map(recipientFingerprint),
                  },
                }
              : {}),
            tool_versions: await toolVersions(),
            repository_id: repo.id,
          },
          p.signingKey,
        );
        const meta = this.metaOf(manifest, stats.storedNew);
        await this.publish(repo, lock, manifest, json, meta);
        const behind = clockBehindNote(p.agentId, id, time);
        if (behind) this.s.warn(behind);
        return { ...meta, pinned: false, ...skippedOf(captured.memdir), ...clockBehindOf(time) };
      });
    } catch (err) {
      Atomics.store(stop, 0, 1); // a copy being packed ahead stops at its next chunk
      throw asSnapshotError(err, `snapshot of agent ${p.agentId}`);
    } finally {
      finished = true; // a plan still waiting for the listing does not start now
      await (workersDone ?? closeWorkers()).catch(() => {}); // none still reads the staging directory
      await Promise.all(discarded);
      await rm(staging, { recursive: true, force: true }).catch(() => {});
    }
  }

  /**
   * SnapshotMeta of a repository manifest (`bundle_path` names the repository and the id);
   * `added_bytes` null without `addedBytes` (what the snapshot's packs were is not in its manifest).
   */
  metaOf(m: RepoManifest, addedBytes?: number): ListingMeta {
    const size = m.artifacts.reduce((n, a) => n + a.size_bytes, 0);
    const meta = metaFromManifest(m as unknown as Manifest, `${this.root}#${m.snapshot_id}`, size);
    if (m.git.head_oid === ZERO_OID) delete meta.git_oid;
    return { ...meta, added_bytes: addedBytes ?? null };
  }

  /** The agent's repository snapshots, newest first (empty when there is no repository). */
  async list(agentId: string, tenant: string): Promise<ListingMeta[]> {
    if (!(await this.exists())) return [];
    const { listSnapshots } = await import('../repository/snapshots.js');
    return listSnapshots({ backend: await this.backendFor() }, { agentId, tenant }, this.warn);
  }

  /** Every listed snapshot (of `tenant`, or of every tenant), newest first; no identity needed. */
  async listAll(tenant?: string): Promise<ListingMeta[]> {
    if (!(await this.exists())) return [];
    const { listSnapshots } = await import('../repository/snapshots.js');
    return listSnapshots(
      { backend: await this.backendFor() },
      tenant !== undefined ? { tenant } : {},
      this.warn,
    );
  }

  /**
   * Whether snapshot `id` is listed (one stat, not a listing); false when there is no repository. Not
   * through the version gate (a read of the config, 0.8 ms of the 1 ms this took): a stat reads no
   * content, and whatever a newer repository's layout makes it answer, the snapshot that may follow
   * is gated.
   */
  async isListed(id: string): Promise<boolean> {
    if (!(await this.exists())) return false;
    return present(await this.storeBackend(), 'listing', id);
  }

  /** Which of `ids` are still listed, and which of those are pinned (retention looks again under the agent lock). */
  async stillListed(ids: readonly string[]): Promise<{ listed: Set<string>; pinned: Set<string> }> {
    const listed = new Set<string>();
    const pinned = new Set<string>();
    const backend = await this.backendFor();
    const { mapLimit } = await import('../repository/repository.js');
    await mapLimit(ids, 16, async (id) => {
      if (!(await present(backend, 'listing', id))) return;
      listed.add(id);
      if (await present(backend, 'pins', id)) pinned.add(id);
    });
    return { listed, pinned };
  }

  /**
   * The listing entries among `entries` that retention must not count (stop 44): a listing entry is a
   * plaintext cache anyone with write access can forge, the manifest is the snapshot. An entry whose
   * manifest is missing, cannot be read, or names another id, agent or tenant is returned with why.
   * Each manifest is read and checked (its seal) when the repository opens with the configured
   * identity; an encrypted repository without one is checked for the manifest's existence only (a stat).
   */
  async unmatchedEntries(entries: readonly ListingMeta[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (entries.length === 0) return out;
    let repo: Repository | undefined;
    try {
      repo = await this.open();
    } catch (err) {
      if (!(err instanceof EncryptionError)) throw err;
    }
    const [{ loadSnapshot }, { mapLimit }] = await Promise.all([
      import('../repository/snapshots.js'),
      import('../repository/repository.js'),
    ]);
    const backend = await this.backendFor();
    await mapLimit(entries, 8, async (m) => {
      if (!repo) {
        await backend.stat({ type: 'snapshots', name: m.id }).catch((err: unknown) => {
          if (!(err instanceof ObjectNotFoundError)) throw err;
          out.set(m.id, 'its listing entry has no manifest');
        });
        return;
      }
      try {
        const { manifest } = await loadSnapshot(repo, m.id);
        if (manifest.agent_id !== m.agent_id || manifest.tenant !== m.tenant)
          out.set(
            m.id,
            `its listing entry names agent ${m.agent_id} (tenant ${m.tenant}), its manifest agent ${manifest.agent_id} (tenant ${manifest.tenant})`,
          );
      } catch (err) {
        if (err instanceof NotFoundError) out.set(m.id, 'its listing entry has no manifest');
        else if (err instanceof BundleDamagedError || err instanceof EncryptionError)
          out.set(m.id, `its manifest cannot be read (${err.message})`);
        else throw err;
      }
    });
    return out;
  }

  /**
   * Whether any of `entries` is a real snapshot — its manifest exists and is its entry's, the test
   * retention counts by (unmatchedEntries) — looked at one at a time in the given order, stopping at the
   * first: delete's "last snapshot" guard (stop 45), so a ghost entry never lets the real last one go.
   */
  async anyReal(entries: readonly ListingMeta[]): Promise<boolean> {
    for (const m of entries) if ((await this.unmatchedEntries([m])).size === 0) return true;
    return false;
  }

  /**
   * Forgets a snapshot for retention, under the agent lock but without the repository lock: forgetting
   * removes only its listing entry, pin and manifest, and a prune running meanwhile at worst keeps its
   * data one round longer. So gc never waits for a prune.
   */
  async forgetForRetention(id: string): Promise<void> {
    const { forgetSnapshot } = await import('../repository/snapshots.js');
    await forgetSnapshot({ backend: await this.backendFor() }, id);
  }

  /** A snapshot of the agent by id or unique prefix (parseSnapshotPrefix); undefined when none matches. */
  async find(agentId: string, tenant: string, idOrPrefix: string): Promise<ListingMeta | undefined> {
    const want = idOrPrefix.trim().toLowerCase();
    const all = await this.list(agentId, tenant);
    // a full id in any spelling the bundle store takes (braced, `urn:uuid:`, without hyphens, any case)
    const full = parseSnapshotId(idOrPrefix);
    const exact = all.find((m) => m.id === (full ?? want));
    if (exact) return exact;
    if (full) {
      if (!(await this.exists())) return undefined;
      // an entry of that id that does not describe it (overwritten, garbled) is damage, not NOT_FOUND
      const { damagedListing } = await import('../repository/snapshots.js');
      const damage = await damagedListing({ backend: await this.backendFor() }, full);
      if (damage) throw damage;
      return undefined;
    }
    // the bundle store's rule (model/ids.ts): not a prefix is not found here (locate says it is invalid)
    const digits = parseSnapshotPrefix(idOrPrefix);
    if (digits === undefined) return undefined;
    const hits = all.filter((m) => idHasPrefix(m.id, digits));
    if (hits.length > 1)
      throw new InvalidInputError(
        `snapshot prefix ${idOrPrefix} is ambiguous (${hits.length} snapshots): give more of its digits`,
      );
    return hits[0];
  }

  /**
   * Verifies a snapshot streamed from the packs; the report has the shape of a bundle's. Without
   * `gitDir` (whose caller checks the history itself: restore, diff) the history is rebuilt in a scratch
   * repository and `git fsck`ed, and with `deep` every database gets `integrity_check`
   * (repository/verify-checks.ts).
   */
  async verify(
    id: string,
    opts: RepoVerifyOptions & {
      trust?: TrustPolicy;
      decryptIdentity?: string;
      onProgress?: ProgressListener;
      deep?: boolean;
    } = {},
  ): Promise<{ report: VerifyReport; result: RepoVerifyResult }> {
    const repo = await this.open(false, [], opts.decryptIdentity);
    const [{ verifyRepoSnapshot, sizeCheckOf }, { checkedVerifyRepoSnapshot }, signatures] =
      await Promise.all([
        import('../repository/verify-snapshot.js'),
        import('../repository/verify-checks.js'),
        import('../format/signature.js'),
      ]);
    return this.locked(repo, false, 'verify', async () => {
      const onBytes = (bytes: number) => opts.onProgress?.({ phase: 'verify', bytes });
      opts.onProgress?.({ phase: 'verify', bytes: 0 }); // the phase begins before its first bytes
      if (opts.gitDir) {
        const result = await verifyRepoSnapshot(repo, id, { ...opts, onBytes });
        return {
          report: this.reportOf(signatures, sizeCheckOf(result), id, result, opts.trust, undefined),
          result,
        };
      }
      const { result, deep } = await checkedVerifyRepoSnapshot(repo, id, {
        ...(opts.deep ? { deep: true } : {}),
        ...(opts.target ? { target: opts.target } : {}),
        onBytes,
      });
      return {
        report: this.reportOf(
          signatures,
          sizeCheckOf(result),
          id,
          result,
          opts.trust,
          opts.deep ? (deep ?? 'skipped') : undefined,
        ),
        result,
      };
    });
  }

  /** `signatures`: format/signature.js, imported by verify (the module list does not load it). */
  private reportOf(
    {
      checkSealSignature,
      signatureRefusal,
      signatureTrustNotChecked,
    }: typeof import('../format/signature.js'),
    /** The artifacts' sizes against the manifest (verify-snapshot.ts sizeCheckOf). */
    size: { failed: boolean; unchecked: number },
    id: string,
    r: RepoVerifyResult,
    trust: TrustPolicy | undefined,
    /** The deep checks' report, `skipped` (the snapshot is damaged), or undefined (not asked for). */
    deep: DeepReport | 'skipped' | undefined,
  ): VerifyReport {
    const m = r.parsed?.manifest;
    const problems = [...r.problems];
    const notChecked: VerifyReport['not_checked'] = [];
    let signature: VerifyReport['signature'];
    if (r.parsed) {
      // v5 (signed) exactly when it carries a signature: parseRepoManifest refuses every other pairing
      const signed = r.parsed.manifest.signature !== undefined;
      const check = checkSealSignature(
        { manifest: r.parsed.manifest, raw: r.parsed.raw, signed },
        trust?.keys ?? [],
      );
      signature = { status: check.status, ...(check.key_id ? { key_id: check.key_id } : {}) };
      const refusal = signatureRefusal(check, trust ?? { keys: [], required: false });
      if (refusal) problems.push({ code: refusal.code, message: refusal.message });
      else {
        const note = signatureTrustNotChecked(check);
        if (note) notChecked.push(note);
      }
    }
    // size_ok is the artifacts' sizes: false when one differs (a problem), or when some artifact's
    // reading stopped at another problem before its size was known (then listed here)
    if (r.parsed && !size.failed && size.unchecked > 0)
      notChecked.push({
        check: 'size',
        reason: `${size.unchecked} of ${r.artifactsTotal} artifacts could not be read whole (see problems): their sizes were not checked`,
      });
    if (deep === undefined)
      notChecked.push({
        check: 'deep',
        reason: 'SQLite PRAGMA integrity_check runs with --deep (restore runs it)',
      });
    else if (deep === 'skipped')
      notChecked.push({ check: 'deep', reason: 'skipped because the snapshot is damaged' });
    else {
      for (const [db, result] of Object.entries(deep.sqlite_integrity))
        if (result !== 'ok')
          problems.push({
            code: 'BUNDLE_DAMAGED',
            message: `integrity_check failed: ${result}`,
            path: `sqlite/${db}.sqlite`,
          });
    }
    const trustOnly =
      problems.length > 0 &&
      problems.every((p) => p.code === 'SIGNATURE_MISSING' || p.code === 'SIGNATURE_UNTRUSTED');
    return {
      bundle: `${this.root}#${id}`,
      manifest_ok: r.parsed !== undefined,
      bundle_sha256_ok: r.parsed !== undefined,
      per_artifact_ok: r.parsed !== undefined && r.artifactsChecked === r.artifactsTotal,
      ...(m ? { schema_versions: m.schema_versions } : {}),
      age_protected: m?.encryption !== undefined,
      status: problems.length === 0 ? 'verified' : trustOnly ? 'untrusted' : 'damaged',
      // none of these ran when the manifest could not be read: a repository snapshot has no sibling
      // file (its manifest object is its record), no tar layout (its paths are the manifest's), and
      // its sizes are checked artifact by artifact
      sibling: r.parsed ? 'ok' : 'unreadable',
      layout_ok: r.parsed !== undefined && !problems.some((p) => p.code === 'UNSAFE_ENTRY'),
      size_ok: r.parsed !== undefined && !size.failed && size.unchecked === 0,
      schema_ok: r.parsed !== undefined,
      ...(m
        ? {
            manifest_version: m.manifest_version,
            bundle_format: m.bundle_format,
            snapshot_id: m.snapshot_id,
            agent_id: m.agent_id,
            tenant: m.tenant,
            created_at_ms: m.created_at_ms,
          }
        : {}),
      artifacts_checked: r.artifactsChecked,
      artifacts_total: r.artifactsTotal,
      bytes_checked: r.bytesChecked,
      ...(deep !== undefined && deep !== 'skipped' ? { deep } : {}),
      ...(signature ? { signature } : {}),
      problems,
      not_checked: notChecked,
    };
  }

  /**
   * Forgets a snapshot (its data goes with the next prune). With `of`, the manifest must be that agent's
   * (stop 44: a listing entry naming another agent made `delete --agent eve` forget ana's snapshot):
   * BundleDamagedError, nothing removed, when it names another. A manifest that is missing (a forged or
   * left-over listing entry: forgetting removes it) or cannot be read (damage) is forgotten as asked.
   * Opening the repository needs the identity of an encrypted one, so the agent is always checked.
   */
  async forget(id: string, of?: { agentId: string; tenant: string }): Promise<void> {
    const repo = await this.open();
    const { forgetSnapshot, loadSnapshot } = await import('../repository/snapshots.js');
    await this.locked(repo, false, 'forget', async () => {
      if (of) {
        const manifest = await loadSnapshot(repo, id).then(
          (p) => p.manifest,
          (err: unknown) => {
            if (err instanceof NotFoundError || err instanceof BundleDamagedError) return undefined;
            throw err;
          },
        );
        // findSnapshot refused it already; checked again under the lock (the entry may change meanwhile),
        // in the words of by-id.ts: the other agent and tenant are not named to this agent's caller
        if (manifest && (manifest.agent_id !== of.agentId || manifest.tenant !== of.tenant))
          throw new BundleDamagedError(
            `listing/${id}: snapshot ${id} is listed for agent ${of.agentId} (tenant ${of.tenant}) but its manifest names another agent or tenant: the listing entry is forged or damaged; nothing was deleted`,
            { details: { object: `listing/${id}` } },
          );
      }
      await forgetSnapshot(repo, id);
    });
  }

  /**
   * Pins repository snapshot `id` of the agent under the agent's repository lock (stop 47): NotFoundError
   * when its listing entry is gone (a delete or retention on another host forgot it), never a pin left
   * behind for a snapshot that no longer exists.
   */
  async pin(agentId: string, tenant: string, id: string, note?: string): Promise<void> {
    const { pinListed } = await import('../repository/snapshots.js');
    const backend = await this.backendFor();
    await this.lockedAgent(agentId, tenant, 'pin', async (lock) => {
      await lock.check(); // a lock lost meanwhile (judged stale elsewhere) no longer serializes anything
      await pinListed({ backend }, id, note);
    }).catch((err: unknown) => this.forgetIfReplaced(err));
  }

  async setPinned(id: string, pinned: boolean, note?: string): Promise<void> {
    const { setPinned } = await import('../repository/snapshots.js');
    await setPinned({ backend: await this.backendFor() }, id, pinned, note).catch((err: unknown) =>
      this.forgetIfReplaced(err),
    );
  }

  /**
   * Removes unreferenced data under the exclusive repository lock, waiting up to `waitMs` (default: the
   * lock timeout; gc passes 0 and reports a busy repository instead of waiting). A dry run removes
   * nothing and takes the shared lock, as check does: a preview (the API's, the console's) never makes a
   * snapshot wait or fail; what running writers have not indexed or listed yet is its `in_flight`.
   */
  async prune(
    opts: Omit<PruneOptions, 'lock'> & { waitMs?: number; decryptIdentity?: string } = {},
  ): Promise<PruneReport> {
    const { waitMs, decryptIdentity, ...rest } = opts;
    const repo = await this.open(false, [], decryptIdentity);
    const { pruneRepository } = await import('../repository/prune.js');
    const dryRun = rest.dryRun === true;
    return this.locked(
      repo,
      !dryRun,
      dryRun ? 'prune-dry-run' : 'prune',
      async (lock) => pruneRepository(await this.fresh(decryptIdentity), { ...rest, lock }),
      waitMs,
    );
  }

  /** `check`; `decryptIdentity` opens an encrypted repository (else the configured identity). */
  async check(opts: CheckOptions & { decryptIdentity?: string } = {}): Promise<CheckReport> {
    const { decryptIdentity, ...rest } = opts;
    const repo = await this.open(false, [], decryptIdentity);
    const { checkRepository } = await import('../repository/check.js');
    // A handle of its own, as prune's: the shared one keeps the index files it read (a refresh reads
    // only new ones), and check must read every index file as it is now, hashed against its name.
    return this.locked(repo, false, 'check', async () =>
      checkRepository(await this.fresh(decryptIdentity), rest),
    );
  }

  /** A snapshot's manifest with its raw JSON, checked (seals, versions, repository id), for restore. */
  async parsed(id: string, identityPath?: string): Promise<ParsedRepoManifest> {
    const repo = await this.open(false, [], identityPath);
    const { loadSnapshot } = await import('../repository/snapshots.js');
    return loadSnapshot(repo, id, undefined, true); // kept for the read under the lock (restore)
  }

  /** A snapshot's manifest, for restore and diff (NotFoundError when absent). */
  async manifest(id: string, identityPath?: string): Promise<RepoManifest> {
    const repo = await this.open(false, [], identityPath);
    const { loadSnapshot } = await import('../repository/snapshots.js');
    return (await loadSnapshot(repo, id)).manifest;
  }
}
