// Owns orchestrating each operation of the local-filesystem snapshotter (the embedded default):
// validate → lock → steps → publish → clean up. The steps themselves live in capture/, verify/,
// format/ and store/; this file decides their order and what is left behind on failure (nothing).
// The modules of an operation's steps are imported when the operation runs, not with this module, so a
// short command (list, pin) does not load the snapshot, verify or restore machinery (CLI start-up); so
// are those of the key and redaction policies (`policies()`: age, ed25519 keys, the redaction rules,
// node:crypto).

import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { DefaultPathResolver, type PathResolver, StoreGuardResolver } from '../agent/resolver.js';
import { JsonFileStateProvider, type StateProvider } from '../agent/state.js';
import type { ClosedGate } from '../agent/write-gate.js';
import type { BackendSettings } from '../backend/open.js';
import type { BackendObserver } from '../backend/remote.js';
import type { CatOptions, CatResult, FindRequest, FindResult, LsOptions, LsResult } from '../browse/types.js';
import type { captureAgent } from '../capture/capture.js';
import type { SigningKey } from '../crypto/sign.js';
import type { DiffRequest, SnapshotDiff } from '../diff/diff.js';
import { BUNDLE_FORMAT, CURRENT_SCHEMA, MANIFEST_VERSION } from '../format/constants.js';
import type { ManifestDraft, RedactionReport } from '../format/manifest.js';
import type { TrustPolicy } from '../format/signature.js';
import {
  asSnapshotError,
  ConcurrentError,
  EncryptionError,
  InvalidInputError,
  NotFoundError,
  type Outcome,
  RetentionError,
  SnapshotError,
  UnknownAgentError,
} from '../model/errors.js';
import {
  DEFAULT_TENANT,
  LATEST,
  newSnapshotId,
  parseSnapshotId,
  textArgument,
  validateAgentId,
  validateCreatedBy,
  validateLabel,
  validatePinNote,
  validateTenant,
} from '../model/ids.js';
import { interruptedRestoreNote } from '../model/restore-note.js';
import {
  DB_NAMES,
  type DeleteResult,
  type ExportResult,
  type RecoverResult,
  type RecoverSweepEntry,
  type RestoreReport,
  type RestoreRequest,
  type SnapshotMeta,
  type SnapshotRequest,
  STATE_KEYS,
  type VerifyReport,
} from '../model/types.js';
import type { RedactionOptions, RedactionPolicy } from '../policy/redaction/scan.js';
import type { CheckOptions, CheckReport } from '../repository/check.js';
import type { PruneOptions, PruneReport } from '../repository/prune.js';
import type { ListingMeta } from '../repository/snapshots.js';
import { removeQuietly } from '../store/atomic.js';
import {
  type BundleFile,
  bundleFiles,
  bundleFilesIn,
  bundleMeta,
  type DirLister,
  dirNames,
  hasBundles,
  listDir,
  locate,
  metaFromManifest,
  readNames,
  skippedOf,
  storeAgents,
  writeSidecar,
} from '../store/catalog.js';
import type { HeldLock } from '../store/lock.js';
import {
  SIBLING_EXT,
  STAGING_PREFIX,
  STORE_DIRS,
  StoreLayout,
  siblingPathOf,
  sidecarPathOf,
} from '../store/paths.js';
import { pin as pinBundle, pinPathOf, unpin as unpinBundle } from '../store/pins.js';
import { writeSibling } from '../store/sibling.js';
import { faultPoint } from '../util/faults.js';
import { makeDirs } from '../util/make-dirs.js';
import { fsyncDir } from '../util/new-file.js';
import { shellWord } from '../util/shell-word.js';
import { toolVersions } from '../util/version.js';
import type { ForeignSnapshotError, FoundSnapshot, LocatedSnapshot } from './by-id.js';
import { captureTime, clockBehindNote, clockBehindOf, newestOf } from './capture-time.js';
import type { GcOptions, RetentionTickReport } from './gc.js';
import type { StoreBundleRequest, StoredBundle } from './import.js';
import type { ExportOptions, MemorySnapshotter, VerifyRequestOptions } from './interface.js';
import type { MigrateOptions, MigrateReport } from './migrate.js';
import { notifyObservers, type OperationObserver, type OperationRecord } from './observer.js';
import {
  type RepoSnapshotParams,
  RepositoryStore,
  STORE_FORMATS,
  type StoreFormat,
  storeFormatFromEnv,
} from './repository.js';

export interface LocalSnapshotterOptions {
  /** Root of the snapshot store (`<state_root>/tenants/...`). Required. */
  stateRoot: string;
  /** Default: stateRoot. Used by the default resolver. */
  memdirRoot?: string;
  /** Default: stateRoot. Used by the default resolver. */
  sqliteRoot?: string;
  resolver?: PathResolver;
  /** Default: JSON files in the resolver's state dir. */
  stateProvider?: StateProvider;
  /** How long to wait for the agent lock and the write gate (default 60 s). */
  lockTimeoutMs?: number;
  /** zstd level (default 3; 1..19). */
  zstdLevel?: number;
  /**
   * Snapshot a memdir whose `.git` reaches a repository outside it (a linked worktree, a submodule, a
   * symlink, alternates): refused by default (GIT), since whoever writes the memdir could point it at
   * any repository the snapshotter can read (config `allow_external_git`).
   */
  allowExternalGit?: boolean;
  /** zstd worker threads (default 2; 0 compresses on the calling thread). */
  zstdWorkers?: number;
  /** Receives warnings (unreadable bundles skipped by list, …). */
  onWarning?: (message: string) => void;
  /** age recipients every snapshot is encrypted to unless its request says otherwise (pre-restore anchors too). */
  recipients?: string[];
  /**
   * Told the outcome of every snapshot (pre-restore ones included), restore, delete and gc: metrics
   * (`MetricsObserver`), lifecycle events (`LifecycleEventsObserver`), or the host's own.
   */
  observers?: OperationObserver[];
  /** ed25519 key (secret key file path, or loaded) every snapshot is signed with (pre-restore anchors too). */
  signingKey?: string | SigningKey;
  /** Public keys (`nexo-sign-pub1…` or files) that restore trusts; verify uses them when given none. */
  trustedKeys?: string[];
  /** Restore refuses bundles without a valid signature by a trusted key (needs trustedKeys). */
  requireSignature?: boolean;
  /** Allowlist and excluded rules for snapshots that ask for redaction and for exports (docs/redaction.md). */
  redaction?: RedactionOptions;
  /**
   * Where new snapshots go: `repository` (content-addressed, docs/repository.md), `bundles` (one
   * `.tar.zst` per snapshot, the 0.2 store), or `auto` (default): the repository when this state root
   * has one, else bundles.
   */
  store?: StoreFormat;
  /** age identity file that opens an encrypted repository (snapshots into it need it too). */
  identityPath?: string;
  /**
   * Where the repository is: a directory, `nats://host:port[,…]/bucket` or `s3://bucket[/prefix]`
   * (docs/remote.md). Default: `<stateRoot>/repository`. A remote repository makes the store format
   * `repository`; staging, journals and agent locks stay under the state root.
   */
  repo?: string;
  /** A remote repository's backend settings (credentials, region, retries): config `store.nats/s3/retry`. */
  repoSettings?: BackendSettings;
  /** Told every request to a remote repository (metrics: SnapshotMetrics.storeObserver). */
  backendObserver?: (backend: string) => BackendObserver;
  /**
   * What leaves the host is redacted unless asked otherwise: `export` (and the HTTP download) of a
   * plaintext bundle that is not redacted re-packs it redacted. Default true (config
   * `redact_secrets_default`); a request's `redact` overrides it.
   */
  redactExports?: boolean;
  /**
   * The wall clock new snapshots are dated by (default Date.now; tests set a wrong one). A snapshot is
   * never dated before its agent's newest one, whatever it says (stop 46, capture-time.ts).
   */
  now?: () => number;
}

/** A condition checked under the agent lock before an automatic snapshot, and told when it was taken. */
interface SnapshotDue {
  check(agentId: string, tenant: string, layout: StoreLayout): Promise<boolean>;
  taken(agentId: string, tenant: string, layout: StoreLayout, meta: SnapshotMeta): Promise<void>;
}

/** The key and redaction policies of a snapshotter's options (LocalSnapshotter.policies). */
export interface SnapshotterPolicies {
  /** The trust restore applies unless a request says otherwise. */
  readonly trust: TrustPolicy;
  /** The redaction rules, allowlist and exclusions (snapshots that ask for it, exports, shown values). */
  readonly redaction: RedactionPolicy;
  /**
   * The configured signing key, read on first call: commands that never sign (verify, diff) work even
   * when the key file is unreadable; snapshot and restore read it before they create anything.
   */
  signingKey(): SigningKey | undefined;
}

/** Errors already reported to the observers (a pre-snapshot failure is not reported twice). */
/** What holds an agent's readers lock shared, named when a delete or migrate is refused by it. */
export const READERS = 'a reader of its snapshot bundles (export, verify, ls, cat, find)';
/** What holds it exclusively, named when a reader is refused by it. */
export const REMOVERS = 'a delete, migrate or gc of its snapshot bundles';

const reported = new WeakSet<object>();

/** The bundle of snapshot `id` in the agent's directory, when there is one (exact id: a repository snapshot's). */
async function bundleCopyOf(dir: string, id: string): Promise<BundleFile | undefined> {
  return (await bundleFiles(dir)).find((f) => f.id === id);
}

/** Deletes a bundle with its sibling, sidecar and pin (the bundle first: what a kill leaves is a leftover). */
async function removeBundleFiles(dir: string, path: string): Promise<void> {
  try {
    await unlink(path);
    await removeQuietly(siblingPathOf(path));
    await removeQuietly(sidecarPathOf(path));
    await removeQuietly(pinPathOf(path));
    await fsyncDir(dir);
  } catch (err) {
    throw asSnapshotError(err, `deleting ${path}`);
  }
}

/** A pinned snapshot is kept until it is unpinned: by retention, and by delete (docs/decisions.md). */
const pinnedError = (id: string) =>
  new RetentionError(`refusing to delete snapshot ${id}: it is pinned (unpin it first)`);

/** An agent's lock as lockAgent takes it (one lock file, or two for a tenant sharing live memory). */
export interface AgentLock {
  release(): void;
}

/** delete's refusal of an agent's last snapshot, with the way to replace it. */
const lastSnapshotRefusal = (agentId: string, tenant: string): string =>
  `refusing to delete last snapshot for agent ${agentId} (tenant ${tenant}): an agent keeps one to restore; to replace it, take a new snapshot first (and unpin this one if it is pinned)`;

export class LocalSnapshotter implements MemorySnapshotter {
  readonly layout: StoreLayout;
  readonly resolver: PathResolver;
  readonly state: StateProvider;
  readonly lockTimeoutMs: number;
  readonly zstdLevel: number;
  readonly zstdWorkers: number;
  readonly allowExternalGit: boolean;
  /** Tells the host's warnings (options.onWarning): unreadable bundles skipped by list, snapshots find skips. */
  readonly warn: (message: string) => void;
  readonly recipients: readonly string[];
  readonly observers: readonly OperationObserver[];
  /** The wall clock new snapshots are dated by (LocalSnapshotterOptions.now). */
  readonly now: () => number;
  private readonly policyOptions: Pick<
    LocalSnapshotterOptions,
    'signingKey' | 'trustedKeys' | 'requireSignature' | 'redaction'
  >;
  private policiesP: Promise<SnapshotterPolicies> | undefined;
  /** The content-addressed repository of this state root (created by the first snapshot into it). */
  readonly repository: RepositoryStore;
  /**
   * Whether the repository was given (`repo`: remote, or a path other hosts may share): its snapshots
   * may be other state roots' (restore --undo then guesses no anchor, snapshotter/restore.ts).
   */
  get repositoryShared(): boolean {
    return this.repository.explicit;
  }
  /** The configured store (LocalSnapshotterOptions.store). */
  readonly storeChoice: StoreFormat;
  private repositoryChosen: boolean | undefined;
  private readonly identityPath: string | undefined;
  readonly redactExports: boolean;
  private readonly configuredPaths: ReadonlyArray<{ role: string; path: string }>;

  constructor(opts: LocalSnapshotterOptions) {
    if (opts?.stateRoot === undefined) throw new InvalidInputError('LocalSnapshotter needs a stateRoot');
    // an empty root is the working directory in disguise (`--memdir-root ''` read ./<agent>): refused,
    // as the config file refuses an empty root, memdir_root or sqlite_root
    for (const key of ['stateRoot', 'memdirRoot', 'sqliteRoot'] as const)
      if (opts[key] !== undefined && (typeof opts[key] !== 'string' || opts[key] === ''))
        throw new InvalidInputError(`${key} must be a non-empty path, got ${JSON.stringify(opts[key])}`);
    this.layout = new StoreLayout(opts.stateRoot);
    this.resolver = new StoreGuardResolver(
      opts.resolver ??
        new DefaultPathResolver(opts.memdirRoot ?? opts.stateRoot, opts.sqliteRoot ?? opts.stateRoot),
      opts.stateRoot,
    );
    this.state = opts.stateProvider ?? new JsonFileStateProvider(this.resolver);
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 60_000;
    // ('1000' waited 16 ms, NaN without a bound: a library caller's options are checked like the config's)
    if (!Number.isSafeInteger(this.lockTimeoutMs) || this.lockTimeoutMs < 0)
      throw new InvalidInputError(
        `lockTimeoutMs must be a whole number ≥ 0, got ${String(this.lockTimeoutMs)}`,
      );
    this.zstdLevel = opts.zstdLevel ?? 3;
    if (!Number.isInteger(this.zstdLevel) || this.zstdLevel < 1 || this.zstdLevel > 19)
      throw new InvalidInputError(`zstdLevel must be an integer 1..19, got ${this.zstdLevel}`);
    this.zstdWorkers = opts.zstdWorkers ?? 2;
    if (!Number.isSafeInteger(this.zstdWorkers) || this.zstdWorkers < 0)
      throw new InvalidInputError(`zstdWorkers must be a whole number ≥ 0, got ${String(this.zstdWorkers)}`);
    this.allowExternalGit = opts.allowExternalGit ?? false;
    this.warn = opts.onWarning ?? (() => {});
    this.recipients = opts.recipients ?? [];
    this.redactExports = opts.redactExports ?? true;
    this.observers = opts.observers ?? [];
    this.now = opts.now ?? Date.now;
    const { signingKey, trustedKeys, requireSignature, redaction } = opts;
    this.policyOptions = { signingKey, trustedKeys, requireSignature, redaction };
    this.storeChoice = opts.store ?? storeFormatFromEnv() ?? 'auto';
    if (!(STORE_FORMATS as readonly string[]).includes(this.storeChoice))
      throw new InvalidInputError(
        `store must be one of ${STORE_FORMATS.join(', ')}, got ${JSON.stringify(this.storeChoice)}`,
      );
    this.identityPath = opts.identityPath;
    this.configuredPaths = [
      { role: 'state root', path: opts.stateRoot },
      ...(opts.resolver ? [] : [{ role: 'memdir root', path: opts.memdirRoot ?? opts.stateRoot }]),
      ...(opts.resolver ? [] : [{ role: 'sqlite root', path: opts.sqliteRoot ?? opts.stateRoot }]),
      ...(opts.identityPath ? [{ role: 'identity file', path: opts.identityPath }] : []),
      ...(typeof opts.signingKey === 'string' ? [{ role: 'signing key', path: opts.signingKey }] : []),
    ].map((p) => ({ role: p.role, path: resolve(p.path) }));
    this.repository = new RepositoryStore(
      this,
      opts.stateRoot,
      opts.identityPath,
      this.zstdLevel,
      this.warn,
      {
        ...(opts.repo !== undefined ? { repo: opts.repo } : {}),
        ...(opts.repoSettings ? { settings: opts.repoSettings } : {}),
        ...(opts.backendObserver ? { observer: opts.backendObserver } : {}),
      },
    );
  }

  /**
   * The host's directories and files this snapshotter was configured with, by role (state root,
   * memdir root, sqlite root, a local repository given by place, the identity and signing key files):
   * what an error told to a remote client names by its role instead (server/client-errors.ts).
   */
  hostPaths(): Array<{ role: string; path: string }> {
    const place = this.repository.place;
    return [
      ...this.configuredPaths,
      ...(this.repository.explicit && place.kind === 'local'
        ? [{ role: 'repository', path: resolve(place.path) }]
        : []),
    ];
  }

  /** Releases what the snapshotter holds open (a remote repository's connections). */
  async close(): Promise<void> {
    await this.repository.close();
  }

  /**
   * The store's own directories, which no export writes into: the state root's (bundles, repository,
   * key pins, caches) and a local repository's given elsewhere (`--repo`).
   */
  storeDirs(): string[] {
    const place = this.repository.place;
    return [
      ...STORE_DIRS.map((d) => join(this.layout.root, d)),
      ...(place.kind === 'local' ? [resolve(place.path)] : []),
    ];
  }

  /** Whether new snapshots go into the repository (see LocalSnapshotterOptions.store). */
  usesRepository(): boolean {
    if (this.repository.explicit) return true; // a repository given by place (--repo) is the store
    if (this.storeChoice !== 'auto') return this.storeChoice === 'repository';
    // A state root that has a repository uses it. One without: the repository, unless it holds 0.2
    // bundles (they stay bundles until `migrate`), or snapshots are encrypted to recipients without an
    // identity configured (an encrypted repository needs the identity to write; bundles need only the
    // recipients). Only "yes" is kept: a running daemon picks up a repository migrate creates meanwhile.
    if (!this.repositoryChosen)
      this.repositoryChosen =
        this.repository.existsLocally() ||
        (!hasBundles(this.layout) && !(this.recipients.length > 0 && this.identityPath === undefined));
    return this.repositoryChosen;
  }

  /**
   * Whether a snapshot encrypted to `recipients` goes into a bundle although `auto` would create the
   * repository: no repository yet, and no identity to write an encrypted one with (the same rule as
   * configured recipients, for `--encrypt`: a repository created encrypted would refuse every later
   * snapshot without the identity). The state root then holds bundles, so `auto` keeps bundles.
   */
  private bundleForEncryption(recipients: readonly string[]): boolean {
    const divert =
      recipients.length > 0 &&
      this.storeChoice === 'auto' &&
      !this.repository.explicit &&
      this.identityPath === undefined &&
      !this.repository.existsLocally();
    if (divert) this.repositoryChosen = false;
    return divert;
  }

  /**
   * The key and redaction policies of the options, built on the first call: the operations that use
   * them ask for them first, so commands that do not (list, gc, pin, delete) load none of their modules
   * (CLI start-up). A bad recipient, trusted key or redaction option fails the first operation that asks,
   * before it creates anything (the config file's checks refuse them earlier).
   */
  policies(): Promise<SnapshotterPolicies> {
    this.policiesP ??= (async () => {
      const [{ parseRecipient }, { loadSigningKey }, { trustPolicy }, { compilePolicy }] = await Promise.all([
        import('../crypto/age.js'),
        import('../crypto/sign.js'),
        import('../format/signature.js'),
        import('../policy/redaction/scan.js'),
      ]);
      for (const r of this.recipients) parseRecipient(r);
      const o = this.policyOptions;
      const redaction = compilePolicy(o.redaction);
      const trust = trustPolicy(o.trustedKeys, o.requireSignature === true);
      const source = o.signingKey;
      let loaded: SigningKey | undefined;
      const signingKey = () => {
        if (typeof source !== 'string') return source;
        loaded ??= loadSigningKey(source);
        return loaded;
      };
      return { trust, redaction, signingKey };
    })();
    return this.policiesP;
  }

  /** Reports an operation to the observers; never throws. */
  observe(record: OperationRecord): void {
    if (record.error) reported.add(record.error);
    notifyObservers(this.observers, record, this.warn);
  }

  /** Runs an operation, reporting its failure (typed, with its outcome label) unless already reported. */
  private async observed<T>(
    op: Promise<T>,
    started: number,
    onSuccess: ((value: T, durationMs: number) => OperationRecord) | undefined,
    onFailure: (error: SnapshotError, durationMs: number) => OperationRecord,
  ): Promise<T> {
    let value: T;
    try {
      value = await op;
    } catch (err) {
      const e = asSnapshotError(err, 'operation'); // the same object when it already is a SnapshotError
      if (!reported.has(e)) this.observe(onFailure(e, performance.now() - started));
      throw err;
    }
    if (onSuccess) this.observe(onSuccess(value, performance.now() - started));
    return value;
  }

  /** Takes the (tenant, agent) lock, waiting up to the lock timeout; ConcurrentError when it stays busy. */
  async lockAgent(agentId: string, tenant: string, operation: string): Promise<AgentLock> {
    const path = this.layout.agentLockPath(tenant, agentId);
    const held = await this.takeLock(path, 'exclusive', agentId, tenant, operation);
    const { recordOwner } = await import('../store/lock.js');
    await recordOwner(path, operation);
    if (tenant === DEFAULT_TENANT || !this.sharesLiveMemory(agentId, tenant)) return held;
    // The same live memory as the default tenant's agent (the default resolver ignores the tenant):
    // that agent's lock too, after this one. Only other tenants ever wait for it while holding a lock,
    // and the default tenant's operations take no second lock, so no two operations wait on each other.
    const shared = this.layout.agentLockPath(DEFAULT_TENANT, agentId);
    try {
      const second = await this.takeLock(shared, 'exclusive', agentId, DEFAULT_TENANT, operation);
      await recordOwner(shared, `${operation} (tenant ${tenant})`);
      return {
        release: () => {
          second.release();
          held.release();
        },
      };
    } catch (err) {
      held.release();
      throw err;
    }
  }

  /** Whether the agent's live paths in `tenant` are those of the default tenant's agent of that id. */
  sharesLiveMemory(agentId: string, tenant: string): boolean {
    return (
      this.resolver.memdir(agentId, tenant) === this.resolver.memdir(agentId, DEFAULT_TENANT) &&
      this.resolver.sqliteDir(agentId, tenant) === this.resolver.sqliteDir(agentId, DEFAULT_TENANT)
    );
  }

  /** Loads what closeWriteGate uses (an operation loads it beside its other modules, before its lock). */
  loadWriteGate(): Promise<[typeof import('../agent/write-gate.js'), typeof import('../store/lock.js')]> {
    return Promise.all([import('../agent/write-gate.js'), import('../store/lock.js')]);
  }

  /**
   * Closes the agent's write gate for a short step (a capture, a restore's swap), waiting up to the lock
   * timeout for the writers inside a batch; ConcurrentError when they keep it open. Live memory that is
   * the default tenant's agent's (the default resolver ignores the tenant) may be written by writers
   * holding the gate of any tenant that shares it: then the default tenant's gate, this tenant's and
   * every other sharing tenant's gate that exists are closed, in tenant order (docs/locking.md).
   */
  async closeWriteGate(agentId: string, tenant: string, operation: string): Promise<ClosedGate> {
    const [{ closeGate }, { LockFileFailure, LockTimeoutError, lockFileError }] = await this.loadWriteGate();
    const closed: ClosedGate[] = [];
    const releaseAll = async () => {
      for (const g of closed.splice(0).reverse()) await g.release();
    };
    let path = '';
    const t0 = performance.now();
    try {
      for (const t of await this.gateTenants(agentId, tenant)) {
        path = this.layout.writeGatePath(t, agentId);
        // one lock timeout for all the gates, not one for each
        closed.push(
          await closeGate(path, Math.max(0, Math.round(this.lockTimeoutMs - (performance.now() - t0)))),
        );
      }
    } catch (err) {
      await releaseAll();
      if (err instanceof LockTimeoutError)
        throw new ConcurrentError(
          agentId,
          tenant,
          operation,
          'a write batch of its memory writers (write gate)',
          this.waitedSince(t0),
        );
      // the file that failed: the gate, or the marker a wait holds (docs/locking.md)
      if (err instanceof LockFileFailure) path = err.path;
      throw path
        ? lockFileError(err, 'closing the write gate', path)
        : asSnapshotError(err, 'closing the write gate');
    }
    return { release: releaseAll };
  }

  /** How long a lock was waited for since `t0` (performance.now()), for its error; none without a wait. */
  private waitedSince(t0: number): number | undefined {
    return this.lockTimeoutMs > 0 ? performance.now() - t0 : undefined;
  }

  /** The tenants whose write gate guards the agent's live memory in `tenant`, sorted (closeWriteGate). */
  private async gateTenants(agentId: string, tenant: string): Promise<string[]> {
    if (tenant !== DEFAULT_TENANT && !this.sharesLiveMemory(agentId, tenant)) return [tenant];
    const tenants = new Set([DEFAULT_TENANT, tenant]);
    for (const t of await readNames(join(this.layout.root, 'tenants'))) {
      if (tenants.has(t)) continue;
      try {
        validateTenant(t);
        if (existsSync(this.layout.writeGatePath(t, agentId)) && this.sharesLiveMemory(agentId, t))
          tenants.add(t);
      } catch {
        // not a tenant's directory, or a tenant whose paths the resolver refuses: no writer of this memory
      }
    }
    return [...tenants].sort();
  }

  /**
   * Any lock of an agent for `operation`, waiting up to the lock timeout; ConcurrentError when busy,
   * naming `holder` (what holds such a lock) or else the holder recorded with the lock (lockAgent).
   */
  async takeLock(
    path: string,
    mode: 'exclusive' | 'shared',
    agentId: string,
    tenant: string,
    operation: string,
    holder?: string,
  ): Promise<HeldLock> {
    const { acquire, describeOwner, LockTimeoutError, lockFileError } = await import('../store/lock.js');
    const t0 = performance.now();
    try {
      return await acquire(path, mode, this.lockTimeoutMs);
    } catch (err) {
      if (err instanceof LockTimeoutError)
        throw new ConcurrentError(
          agentId,
          tenant,
          operation,
          holder ?? describeOwner(err.holder),
          this.waitedSince(t0),
        );
      throw lockFileError(err, 'taking the lock', path);
    }
  }

  /** Is there anything of this agent to capture? Checked before anything is created. */
  async agentExists(agentId: string, tenant: string): Promise<boolean> {
    const { pathKind } = await import('../capture/capture.js');
    if ((await pathKind(this.resolver.memdir(agentId, tenant))) !== undefined) return true;
    const sqliteDir = this.resolver.sqliteDir(agentId, tenant);
    for (const db of DB_NAMES) if ((await pathKind(`${sqliteDir}/${db}.sqlite`)) !== undefined) return true;
    for (const key of STATE_KEYS)
      if ((await this.state.capture(key, agentId, tenant)) !== undefined) return true;
    return false;
  }

  /**
   * What a snapshot of an agent that exists (agentExists) says of a part it does not find: its memdir,
   * or the directory of its databases, absent. An agent may have one without the other, but a mistyped
   * root looks just like that, and restoring such a snapshot moves the part aside (docs/decisions.md,
   * "Capture", stop 47): the snapshot is taken and says so, naming the path it looked at.
   */
  private async missingParts(memdir: string, sqliteDir: string): Promise<string[]> {
    const { pathKind } = await import('../capture/capture.js');
    const warnings: string[] = [];
    const [memdirKind, sqliteKind] = await Promise.all([pathKind(memdir), pathKind(sqliteDir)]);
    if (memdirKind === undefined)
      warnings.push(
        `no memdir at ${memdir}: this snapshot holds no memory files, and restoring it would move the agent's memdir aside (is the memdir root right?)`,
      );
    if (sqliteKind === undefined && sqliteDir !== memdir) {
      // the default layout's databases in the memdir, taken by a snapshot told another SQLite root
      // (`--memdir-root` given, `--sqlite-root` not): there they are memory files, copied as they
      // are, not consistent copies (stop 63, a review of ordinary CLI use)
      const inMemdir =
        memdirKind === 'dir'
          ? DB_NAMES.filter((db) => existsSync(join(memdir, `${db}.sqlite`))).map((db) => `${db}.sqlite`)
          : [];
      warnings.push(
        `no database directory at ${sqliteDir}: this snapshot holds no SQLite databases, and restoring it would move the agent's databases aside (is the SQLite root right?)` +
          (inMemdir.length > 0
            ? `; the memdir holds ${inMemdir.join(', ')}, taken as memory files (copied as they are, not consistent copies): give the memdir's root as the SQLite root too`
            : ''),
      );
    }
    // A database beside the four that no snapshot holds (in a directory of its own: in the memdir it
    // is a memory file): the snapshot says so rather than look like a backup of it.
    if (sqliteKind === 'dir' && sqliteDir !== memdir) {
      const others = (await readdir(sqliteDir, { withFileTypes: true }).catch(() => []))
        .filter((e) => e.isFile())
        .map((e) => e.name)
        .filter(
          (n) =>
            /\.(sqlite3?|db)$/i.test(n) &&
            !(DB_NAMES as readonly string[]).includes(n.replace(/\.sqlite$/, '')),
        )
        .sort();
      if (others.length > 0)
        warnings.push(
          `the database directory ${sqliteDir} holds ${others.length === 1 ? 'a database' : `${others.length} databases`} no snapshot holds (${others.slice(0, 5).map(shellWord).join(', ')}${others.length > 5 ? ', …' : ''}): a snapshot holds ${DB_NAMES.map((d) => `${d}.sqlite`).join(', ')} only`,
        );
    }
    // An agent directory that is there but empty (no memory file, no git history, no database): a
    // mistyped agent id under a root that holds agents, made by hand or by a tool, snapshotted as an
    // empty memory without a word (stop 58, a new operator's walk through the README).
    if (memdirKind === 'dir' && warnings.length === 0) {
      const held = async (dir: string) => (await readdir(dir).catch(() => [''])).length > 0;
      if (!(await held(memdir)) && (sqliteDir === memdir || !(await held(sqliteDir))))
        warnings.push(
          `the agent's memdir ${memdir} is empty${sqliteDir === memdir ? '' : `, and so is ${sqliteDir}`}: this snapshot holds no memory files and no databases (is the agent id right?)`,
        );
    }
    return warnings;
  }

  /**
   * Starts the program host now when the agent's live databases are large (prepare-read.ts
   * prepareHostFor), without waiting: a bad agent or root is reported by the operation itself.
   */
  private prepareLarge(agentId: string, tenant: string | undefined): void {
    import('./prepare-read.js')
      .then(({ prepareHostFor }) =>
        prepareHostFor(this.resolver.sqliteDir(agentId, tenant ?? DEFAULT_TENANT)),
      )
      .catch(() => {});
  }

  async snapshot(req: SnapshotRequest): Promise<SnapshotMeta> {
    const started = performance.now();
    // a large agent's snapshot starts its program host now, while its steps' modules load
    this.prepareLarge(req.agentId, req.tenant);
    // Success is reported by snapshotLocked (which restore's pre-snapshot uses too).
    return this.observed(this.snapshotUnlocked(req, started), started, undefined, (error, durationMs) => ({
      op: 'snapshot',
      agentId: String(req.agentId),
      tenant: String(req.tenant ?? DEFAULT_TENANT),
      createdBy: String(req.createdBy ?? 'library'),
      outcome: error.outcome,
      error,
      durationMs,
    }));
  }

  /**
   * An automatic snapshot of kind `req.createdBy` (`auto-…`), unless the agent's last one of that kind
   * was taken less than `minIntervalMs` ago — by any process: the time is kept beside the agent lock and
   * read under it. The pre-mutating-tool hook (agent/pre-mutating-tool.ts) is built on this.
   */
  /**
   * Whether the agent's snapshot `id` is still stored: its bundle file, or its listing entry in the
   * repository — a stat or two, not a listing (the throttle asks it on calls it skips; a listing of a
   * 10,000-snapshot repository made each such call take 1.4 s, stop 57).
   */
  async stillStored(agentId: string, tenant: string, id: string): Promise<boolean> {
    const a = validateAgentId(agentId);
    const t = validateTenant(tenant);
    // an id not in the canonical form (a record written by hand, damaged) names no snapshot
    if (parseSnapshotId(id) !== id) return false;
    if ([false, true].some((encrypted) => existsSync(this.layout.bundlePath(t, a, id, encrypted))))
      return true;
    return this.repository.isListed(id);
  }

  async snapshotUnlessRecent(
    req: SnapshotRequest,
    minIntervalMs: number,
  ): Promise<{ snapshot: SnapshotMeta } | { skipped: 'interval'; last_at_ms: number; snapshot_id?: string }> {
    const started = performance.now();
    const kind = String(req.createdBy);
    if (!/^auto-[a-z0-9-]{1,59}$/.test(kind))
      throw new InvalidInputError(
        `an automatic snapshot's created_by is auto-<kind> ([a-z0-9-]), got ${kind}`,
      );
    if (!Number.isSafeInteger(minIntervalMs) || minIntervalMs < 0)
      throw new InvalidInputError('minIntervalMs must be an integer ≥ 0');
    let last: number | undefined;
    let lastId: string | undefined;
    const { readLastTaken, writeLastTaken } = await import('../store/last-taken.js');
    const clock = this.now;
    const due = {
      check: async (agentId: string, tenant: string, layout: StoreLayout): Promise<boolean> => {
        const record = await readLastTaken(layout.lastTakenPath(tenant, agentId, kind));
        last = record?.created_at_ms;
        lastId = record?.snapshot_id;
        const now = clock();
        if (last === undefined || now < last || now - last >= minIntervalMs) return true;
        // The snapshot the record names must still be there: one deleted since (delete, gc) covers
        // nothing, and the call was skipped with no snapshot to roll back to (stop 57).
        if (record?.snapshot_id === undefined) return false;
        return !(await this.stillStored(agentId, tenant, record.snapshot_id));
      },
      // by the clock's time, which `check` compares with the clock: a snapshot dated after the agent's
      // newest one (the clock behind it, stop 46) would otherwise look taken in the future, and every
      // call until the clock caught up would take another
      taken: async (agentId: string, tenant: string, layout: StoreLayout, meta: SnapshotMeta) =>
        writeLastTaken(layout.lastTakenPath(tenant, agentId, kind), {
          id: meta.id,
          created_at_ms: meta.created_at_ms - (meta.clock_behind_ms ?? 0),
        }),
    };
    const meta = await this.observed(
      this.snapshotUnlocked(req, started, due),
      started,
      undefined,
      (error, durationMs) => ({
        op: 'snapshot',
        agentId: String(req.agentId),
        tenant: String(req.tenant ?? DEFAULT_TENANT),
        createdBy: kind,
        outcome: error.outcome,
        error,
        durationMs,
      }),
    );
    if (meta) return { snapshot: meta };
    this.observe({
      op: 'snapshot-skipped',
      agentId: String(req.agentId),
      tenant: String(req.tenant ?? DEFAULT_TENANT),
      createdBy: kind,
      reason: 'interval',
      outcome: 'ok',
      durationMs: performance.now() - started,
    });
    return {
      skipped: 'interval',
      last_at_ms: last!,
      ...(lastId !== undefined ? { snapshot_id: lastId } : {}),
    };
  }

  private async snapshotUnlocked(req: SnapshotRequest, started: number): Promise<SnapshotMeta>;
  private async snapshotUnlocked(
    req: SnapshotRequest,
    started: number,
    due: SnapshotDue,
  ): Promise<SnapshotMeta | undefined>;
  private async snapshotUnlocked(
    req: SnapshotRequest,
    started: number,
    due?: SnapshotDue,
  ): Promise<SnapshotMeta | undefined> {
    const agentId = validateAgentId(req.agentId);
    const tenant = validateTenant(req.tenant ?? DEFAULT_TENANT);
    const label = validateLabel(req.label);
    const createdBy = validateCreatedBy(req.createdBy ?? 'library');
    if (req.redact !== undefined && typeof req.redact !== 'boolean')
      throw new InvalidInputError('redact must be a boolean');
    const sign: unknown = req.sign;
    if (
      sign !== undefined &&
      sign !== false &&
      typeof sign !== 'string' &&
      !(sign !== null && typeof sign === 'object' && 'secret' in sign && 'keyId' in sign)
    )
      throw new InvalidInputError(
        'sign must be a signing key (its text, its file or the loaded key) or false',
      );
    if (
      req.encrypt !== undefined &&
      !(Array.isArray(req.encrypt) && req.encrypt.every((r) => typeof r === 'string'))
    )
      throw new InvalidInputError('encrypt must be a list of age recipients (strings)');
    if (req.redact && createdBy.startsWith('auto-pre-'))
      throw new InvalidInputError(`an anchor (${createdBy}) is never redacted: it must restore exactly`);
    const [policies, { parseRecipient }, { loadSigningKey }] = await Promise.all([
      this.policies(),
      import('../crypto/age.js'),
      import('../crypto/sign.js'),
    ]);
    const recipients = req.encrypt ?? [...this.recipients];
    for (const r of recipients) parseRecipient(r); // a bad recipient fails before anything is created
    // so does a bad signing key
    const signingKey =
      req.sign === false
        ? undefined
        : typeof req.sign === 'string'
          ? loadSigningKey(req.sign)
          : (req.sign ?? policies.signingKey());
    const memdir = this.resolver.memdir(agentId, tenant);
    const sqliteDir = this.resolver.sqliteDir(agentId, tenant);
    if (!(await this.agentExists(agentId, tenant))) {
      throw new UnknownAgentError(agentId, tenant, [
        memdir,
        sqliteDir,
        this.resolver.stateDir(agentId, tenant),
      ]);
    }
    const warnings = await this.missingParts(memdir, sqliteDir);
    const dir = this.layout.snapshotsDir(tenant, agentId);
    try {
      await makeDirs(dir); // (EROFS on a read-only state root, not Node's ENOENT)
    } catch (err) {
      throw asSnapshotError(err, `creating snapshot directory ${dir}`);
    }
    // An automatic snapshot inside its interval is skipped at once, without waiting for the agent's
    // lock (another operation may hold it for minutes); the check under the lock below decides.
    if (due && !(await due.check(agentId, tenant, this.layout))) return undefined;
    const lock = await this.lockAgent(agentId, tenant, 'snapshot');
    try {
      await this.recoverInterrupted(agentId, tenant);
      if (due && !(await due.check(agentId, tenant, this.layout))) return undefined;
      const meta = await this.snapshotLocked({
        agentId,
        tenant,
        label,
        createdBy,
        memdir,
        sqliteDir,
        dir,
        recipients,
        signingKey,
        ...(req.redact === true ? { redact: policies.redaction } : {}),
        onProgress: req.onProgress,
        started,
      });
      // Not recorded: one more automatic snapshot later, never a failed one now.
      await due
        ?.taken(agentId, tenant, this.layout, meta)
        .catch((err: unknown) =>
          this.warn(`recording the time of snapshot ${meta.id}: ${(err as Error).message}`),
        );
      for (const w of warnings) this.warn(w);
      return warnings.length > 0 ? { ...meta, warnings } : meta;
    } finally {
      lock.release();
    }
  }

  /** The snapshot steps; the caller holds the agent lock (restore calls this for its pre-snapshot). */
  async snapshotLocked(
    p: RepoSnapshotParams & {
      /** performance.now() when the operation began (default: now). */
      started?: number;
    },
  ): Promise<SnapshotMeta> {
    const started = p.started ?? performance.now();
    const record = (durationMs: number) => ({
      op: 'snapshot' as const,
      agentId: p.agentId,
      tenant: p.tenant,
      createdBy: p.createdBy,
      durationMs,
    });
    return this.observed(
      this.snapshotSteps(p),
      started,
      (meta, durationMs) => ({ ...record(durationMs), outcome: 'ok', meta }),
      (error, durationMs) => ({ ...record(durationMs), outcome: error.outcome, error }),
    );
  }

  private async snapshotSteps(p: Parameters<LocalSnapshotter['snapshotLocked']>[0]): Promise<SnapshotMeta> {
    if (this.usesRepository() && !this.bundleForEncryption(p.recipients)) return this.repository.snapshot(p);
    // The copy workers first: they start on the other core while this one loads the steps' modules.
    // Then what the capture needs; the rest (redaction, the manifest, packing) loads during the capture.
    const workers = await (await import('../sqlite/worker.js')).liveDatabaseRunners(p.sqliteDir);
    const closeWorkers = () => Promise.all(workers.splice(0).map((w) => w.close()));
    const [{ captureAgent, hashCapture }] = await Promise.all([
      import('../capture/capture.js'),
      this.loadWriteGate(),
    ]).catch(async (err: unknown) => {
      await closeWorkers();
      throw err;
    });
    const afterCapture = Promise.all([
      import('../format/manifest.js'),
      import('../format/writer.js'),
      import('../policy/redaction/redact.js'),
      import('../crypto/age.js'),
    ]);
    afterCapture.catch(() => {}); // awaited after the capture (a failure there ends the snapshot)
    const id = newSnapshotId();
    // The agent's newest snapshot (either store), read while the agent is captured: the new one is dated
    // after it (capture-time.ts; the agent lock, held by the caller, keeps it the newest meanwhile).
    const newest = this.newestStored(p.agentId, p.tenant);
    newest.catch(() => {}); // awaited after the capture
    const staging = resolve(p.dir, `${STAGING_PREFIX}${id}`);
    const encrypted = p.recipients.length > 0;
    const bundlePath = this.layout.bundlePath(p.tenant, p.agentId, id, encrypted);
    let published = false;
    try {
      await mkdir(staging, { mode: 0o700 });
      p.onProgress?.({ phase: 'capture', bytes: 0 });
      const gate = p.gateHeld
        ? { release: async () => {} }
        : await this.closeWriteGate(p.agentId, p.tenant, 'snapshot');
      let captured: Awaited<ReturnType<typeof captureAgent>>;
      try {
        captured = await captureAgent({
          agentId: p.agentId,
          tenant: p.tenant,
          memdir: p.memdir,
          sqliteDir: p.sqliteDir,
          state: this.state,
          stagingDir: staging,
          sqlite: workers,
          allowExternalGit: this.allowExternalGit,
        });
      } finally {
        await gate.release();
      }
      const [{ sealManifest }, { packBundle }, { redactStaging }, { recipientFingerprint }] =
        await afterCapture;
      if (!captured.found) {
        throw new UnknownAgentError(p.agentId, p.tenant, [
          p.memdir,
          p.sqliteDir,
          this.resolver.stateDir(p.agentId, p.tenant),
        ]);
      }
      // After the gate is released and before anything is hashed: the seals cover the redacted bytes.
      let redactions: RedactionReport | undefined;
      if (p.redact) {
        p.onProgress?.({ phase: 'redact', bytes: 0 });
        faultPoint('snapshot.redact');
        redactions = await redactStaging(p.redact, captured, staging, p.memdir);
      }
      p.onProgress?.({ phase: 'hash', bytes: 0 });
      const artifacts = await hashCapture(captured, workers);
      await closeWorkers();
      const time = captureTime(this.now(), await newest);
      const createdAt = time.createdAtMs;
      const draft: ManifestDraft = {
        manifest_version: MANIFEST_VERSION,
        bundle_format: BUNDLE_FORMAT,
        snapshot_id: id,
        agent_id: p.agentId,
        tenant: p.tenant,
        ...(p.label !== undefined ? { label: p.label } : {}),
        created_at_ms: createdAt,
        created_by: p.createdBy,
        schema_versions: { ...CURRENT_SCHEMA },
        git: captured.git,
        artifacts: artifacts.map((a) => ({
          path_in_bundle: a.pathInBundle,
          kind: a.kind,
          size_bytes: a.size,
          sha256: a.sha256,
        })),
        ...(captured.memdir ? { memdir: captured.memdir } : {}),
        databases: captured.databaseInfo,
        ...(redactions ? { redactions } : {}),
        ...(encrypted
          ? { encryption: { scheme: 'age', recipients_fingerprint: p.recipients.map(recipientFingerprint) } }
          : {}),
        tool_versions: await toolVersions(),
      };
      const { manifest, bytes } = sealManifest(draft, p.signingKey);
      const total = bytes.length + artifacts.reduce((s, a) => s + a.size, 0);
      p.onProgress?.({ phase: 'pack', bytes: 0, total });
      const packed = await packBundle({
        finalPath: bundlePath,
        manifestBytes: bytes,
        entries: artifacts.map((a) => ({
          pathInBundle: a.pathInBundle,
          size: a.size,
          ...(a.data ? { data: a.data } : { sourcePath: a.stagedPath! }),
        })),
        mtimeSec: Math.floor(createdAt / 1000),
        zstd: { level: this.zstdLevel, workers: this.zstdWorkers },
        recipients: p.recipients,
        onBytes: (n) => p.onProgress?.({ phase: 'pack', bytes: n, total }),
      });
      published = true;
      faultPoint('snapshot.sibling');
      await writeSibling(bundlePath, packed.sha256);
      const meta = metaFromManifest(manifest, bundlePath, packed.size, packed.sha256);
      faultPoint('snapshot.sidecar');
      await writeSidecar(meta);
      const behind = clockBehindNote(p.agentId, id, time);
      if (behind) this.warn(behind);
      // as list() shows it (a new snapshot is never pinned; a bundle adds its file), what of the
      // memdir it left out, and how far the clock was behind the agent's newest snapshot
      return {
        ...meta,
        pinned: false,
        added_bytes: meta.bundle_size_bytes,
        ...skippedOf(captured.memdir),
        ...clockBehindOf(time),
      };
    } catch (err) {
      if (published) {
        // A bundle without its sibling and sidecar must not stay visible.
        await removeQuietly(sidecarPathOf(bundlePath));
        await removeQuietly(siblingPathOf(bundlePath));
        await removeQuietly(bundlePath);
      }
      throw asSnapshotError(err, `snapshot of agent ${p.agentId}`);
    } finally {
      await closeWorkers();
      await rm(staging, { recursive: true, force: true }).catch(() => {});
    }
  }

  /**
   * The agent's newest snapshot in either store, as `list` orders them: a new snapshot is dated after
   * it (capture-time.ts). The bundles from the catalogue (their sidecars); the repository's from
   * `inRepository` when the caller read its listing already, else read here (a repository that cannot
   * be read is warned about: the bundle is still taken).
   */
  async newestStored(
    agentId: string,
    tenant: string,
    inRepository?: Promise<readonly ListingMeta[]>,
  ): Promise<Pick<SnapshotMeta, 'id' | 'created_at_ms'> | undefined> {
    const [{ metas }, listed] = await Promise.all([
      listDir(this.layout.snapshotsDir(tenant, agentId), agentId, tenant),
      inRepository ??
        this.repository.list(agentId, tenant).catch((err: unknown) => {
          this.warn(
            `reading the repository's snapshots of agent ${agentId} to date the new one after them: ${(err as Error).message}`,
          );
          return [];
        }),
    ]);
    return newestOf(metas, listed);
  }

  /**
   * Under the agent lock: finishes or rolls back a restore that was interrupted (its journal), removes
   * staging left by operations that died, and completes a bundle that was published but lost its
   * sibling and sidecar to a crash, once it verifies fully. Returns what happened to a journal.
   */
  async recoverInterrupted(
    agentId: string,
    tenant: string,
    graceMs = 0,
    warn: (message: string) => void = this.warn,
    /** How the directories shared by many agents (the memdir root) are listed; gc passes a cache. */
    list: DirLister = readNames,
  ): Promise<RecoverResult | undefined> {
    const journalPath = this.layout.journalPath(tenant, agentId);
    let recovered: RecoverResult | undefined;
    /** What was removed or finished besides the journal: restore staging, snapshot leftovers, bundles completed. */
    const cleaned: string[] = [];
    const { restoreLeftovers } = await import('../restore/stage.js');
    const importPath = this.layout.importRecordPath(tenant, agentId);
    if (existsSync(journalPath)) {
      const { recoverJournal } = await import('../restore/journal.js');
      const gate = await this.closeWriteGate(agentId, tenant, 'the recovery of an interrupted restore');
      try {
        // A restore finished here is recorded for --undo as its own commit would have (a rolled-back one
        // never is: the anchor it took is not a restore to undo), and an import's restore that committed
        // keeps its snapshot: both before the journal goes, so a recovery killed in between does the
        // same again instead of leaving --undo on an older restore's anchor (stop 61) or taking the
        // import's record for an import that never committed and forgetting its snapshot (stop 55).
        const owner = {
          agentId,
          tenant,
          memdir: this.resolver.memdir(agentId, tenant),
          sqliteDir: this.resolver.sqliteDir(agentId, tenant),
          snapshotsDir: this.layout.snapshotsDir(tenant, agentId),
        };
        const r = await recoverJournal(journalPath, this.state, owner, async (j) => {
          const { recordUndo } = await import('./restore.js');
          const notes: string[] = [];
          await recordUndo(this, j, notes);
          for (const n of notes) warn(n);
          if (!existsSync(importPath)) return;
          await unlink(importPath);
          cleaned.push(importPath);
        });
        if (r) {
          recovered = { agent_id: agentId, tenant, outcome: r.outcome, restore_id: r.journal.restore_id };
          warn(interruptedRestoreNote(r.journal.restore_id, agentId, r.outcome));
        }
      } finally {
        await gate.release();
      }
    }
    // An import that stored a snapshot and was killed before its restore committed (its record is
    // removed at the commit): the snapshot is forgotten again, as the import does when its restore fails.
    let forgotten: string | undefined;
    if (existsSync(importPath)) {
      const { readImportRecord } = await import('./import.js');
      const record = await readImportRecord(importPath);
      if (record && recovered?.outcome !== 'completed') {
        await this.repository.forget(record.snapshot_id, { agentId, tenant });
        forgotten = record.snapshot_id;
        warn(
          `forgot snapshot ${record.snapshot_id}: an interrupted import of agent ${agentId} stored it but its restore never committed`,
        );
      }
      await unlink(importPath);
      cleaned.push(importPath);
    }
    const memdir = this.resolver.memdir(agentId, tenant);
    const sqliteDir = this.resolver.sqliteDir(agentId, tenant);
    for (const p of await restoreLeftovers({ memdir, sqliteDir }, list)) {
      const st = await stat(p).catch(() => undefined);
      if (!st || (graceMs > 0 && Date.now() - st.mtimeMs < graceMs)) continue;
      // one that cannot be removed stays for a later operation and fails none (stop 54)
      try {
        await rm(p, { recursive: true, force: true });
      } catch (err) {
        warn(`could not remove staging of an interrupted restore: ${p}: ${(err as Error).message}`);
        continue;
      }
      warn(`removed staging of an interrupted restore: ${p}`);
      cleaned.push(p);
    }
    const dir = this.layout.snapshotsDir(tenant, agentId);
    // One listing of the agent's directory serves both passes (nothing else writes it: we hold the lock).
    const names = await dirNames(dir);
    const { cleanLeftovers } = await import('../store/leftovers.js');
    const removed = new Set(
      await cleanLeftovers(dir, graceMs, names, (name, err) =>
        warn(`could not remove leftover of an interrupted operation: ${name}: ${(err as Error).message}`),
      ),
    );
    for (const name of removed) {
      warn(`removed leftover of an interrupted operation: ${name}`);
      cleaned.push(join(dir, name));
    }
    const present = new Set(names.filter((n) => !removed.has(n)));
    for (const file of bundleFilesIn(dir, [...present])) {
      if (file.encrypted || present.has(`${file.name}${SIBLING_EXT}`)) continue;
      const [{ refused, verifyBundleFile }, { readManifestOnly }] = await Promise.all([
        import('../verify/verify.js'),
        import('../format/reader.js'),
      ]);
      const report = await verifyBundleFile(file.path).catch(() => undefined);
      if (!report || refused(report) || !report.file_sha256) {
        warn(`bundle ${file.name} has no sibling and does not verify; left as it is`);
        continue;
      }
      await writeSibling(file.path, report.file_sha256);
      const { parsed } = await readManifestOnly(file.path);
      await writeSidecar(
        metaFromManifest(parsed.manifest, file.path, (await stat(file.path)).size, report.file_sha256),
      );
      warn(`completed bundle ${file.name}: it verified, its sibling and sidecar were rewritten`);
      cleaned.push(file.path);
    }
    const also = forgotten ? { forgotten_snapshot: forgotten } : {};
    if (recovered)
      return cleaned.length
        ? { ...recovered, leftovers_removed: cleaned, ...also }
        : { ...recovered, ...also };
    return cleaned.length
      ? { agent_id: agentId, tenant, outcome: 'cleaned', leftovers_removed: cleaned, ...also }
      : undefined;
  }

  /** `nexo-memory recover --agent`: takes the lock and runs recoverInterrupted. */
  async recover(agentId: string, tenant: string = DEFAULT_TENANT): Promise<RecoverResult | undefined> {
    const a = validateAgentId(agentId);
    const t = validateTenant(tenant);
    const lock = await this.lockAgent(a, t, 'recover');
    try {
      return await this.recoverInterrupted(a, t);
    } finally {
      lock.release();
    }
  }

  /**
   * `nexo-memory recover --all`: `recover` for every agent of the store (a snapshot directory or a
   * journal), so it removes exactly what `recover --agent` removes, leftovers of kills before any
   * journal was written included. One agent's failure (a damaged journal, a lock that stayed held, an
   * I/O error) does not stop the sweep: it is an entry of its own (`outcome: 'failed'`, with the error's
   * code and exit status) and the next agents are recovered as they would be without it.
   */
  async recoverAll(): Promise<RecoverSweepEntry[]> {
    const out: RecoverSweepEntry[] = [];
    for (const [tenant, agent] of await storeAgents(this.layout)) {
      try {
        const r = await this.recover(agent, tenant);
        if (r) out.push(r);
      } catch (err) {
        const e = asSnapshotError(err, `recovery of agent ${agent}`);
        out.push({
          agent_id: agent,
          tenant,
          outcome: 'failed',
          error: e.message,
          error_code: e.code,
          exit_code: e.exitCode,
        });
      }
    }
    return out;
  }

  async restore(req: RestoreRequest): Promise<RestoreReport> {
    const started = performance.now();
    const record = (durationMs: number) => ({
      op: 'restore' as const,
      agentId: String(req.agentId),
      tenant: String(req.tenant ?? DEFAULT_TENANT),
      dryRun: req.dryRun === true,
      durationMs,
    });
    // a large agent's restore starts its program host now, while the restore's modules load
    if (!req.import) this.prepareLarge(req.agentId, req.tenant);
    // an import into a repository store also keeps the bundle as a snapshot of the new agent
    const steps = Promise.resolve()
      .then(() => {
        if (req.bundle !== undefined) textArgument('bundle', req.bundle);
        if (req.snapshot !== undefined) textArgument('snapshot', req.snapshot);
      })
      .then(() =>
        req.import && !req.dryRun && this.usesRepository()
          ? import('./import.js').then(({ importIntoRepository }) => importIntoRepository(this, req))
          : import('./restore.js').then(({ restoreAgent }) => restoreAgent(this, req)),
      );
    return this.observed(
      steps,
      started,
      (report, durationMs) => ({ ...record(durationMs), outcome: 'ok', report }),
      (error, durationMs) => ({ ...record(durationMs), outcome: error.outcome, error }),
    );
  }

  /**
   * `import --store-only`: stores a bundle (v1 included) as a snapshot of an agent in the repository,
   * changing nothing live (snapshotter/import.ts). Needs the repository store.
   */
  async storeBundle(req: StoreBundleRequest): Promise<StoredBundle> {
    const started = performance.now();
    const { storeBundle, announceStored } = await import('./import.js');
    const stored = await storeBundle(this, req);
    announceStored(this, stored, started);
    return stored;
  }

  /**
   * `nexo-memory migrate`: moves every bundle of the state root into the repository (created when there
   * is none; `auto` picks it from then on). See snapshotter/migrate.ts.
   */
  async migrate(opts: MigrateOptions = {}): Promise<MigrateReport> {
    if (this.storeChoice === 'bundles')
      throw new InvalidInputError(
        'the store is configured as bundles (store.format: bundles): migrate moves bundles into the repository, which this configuration does not use',
      );
    try {
      const { migrateBundles } = await import('./migrate.js');
      return await migrateBundles(this, opts);
    } catch (err) {
      throw asSnapshotError(err, 'migrate');
    } finally {
      // (a store that cannot answer now, a remote one down, changes nothing here: its error never takes
      // the place of migrate's outcome, stop 54)
      this.repositoryChosen = (await this.repository.exists().catch(() => false)) || this.repositoryChosen;
    }
  }

  /** Compares two snapshots (ids, unique prefixes, or `live`). */
  async diff(req: DiffRequest): Promise<SnapshotDiff> {
    textArgument('a', req.a);
    textArgument('b', req.b);
    try {
      const { diffSnapshots } = await import('../diff/diff.js');
      return await diffSnapshots(this, req);
    } catch (err) {
      throw asSnapshotError(err, `diff of agent ${req.agentId}`);
    }
  }

  /** One retention sweep (see snapshotter/gc.ts). */
  async gc(opts: GcOptions = {}): Promise<RetentionTickReport> {
    const started = performance.now();
    const dryRun = opts.dryRun === true;
    let outcomeOf: ((r: RetentionTickReport) => Outcome) | undefined;
    return this.observed(
      import('./gc.js').then(({ collectGarbage, gcOutcome }) => {
        outcomeOf = gcOutcome;
        return collectGarbage(this, opts);
      }),
      started,
      // a sweep with errors (an agent that failed, an unreadable bundle, the prune) is not `ok`: its
      // outcome is its exit status's (stop 47)
      (report, durationMs) => ({
        op: 'gc',
        dryRun,
        outcome: outcomeOf?.(report) ?? 'ok',
        report,
        durationMs,
      }),
      (error, durationMs) => ({ op: 'gc', dryRun, outcome: error.outcome, error, durationMs }),
    );
  }

  /**
   * Pins a snapshot: retention never deletes it. Returns its metadata. Under the agent lock, as every
   * write into the snapshot directory (a sweep may otherwise see the pin's temporary file as a leftover,
   * or delete the bundle being pinned), after the recovery of interrupted work (recoverInterrupted).
   */
  async pin(agentId: string, tenant: string | undefined, id: string, note?: string): Promise<SnapshotMeta> {
    const a = validateAgentId(agentId);
    const t = validateTenant(tenant ?? DEFAULT_TENANT);
    note = validatePinNote(note); // list shows it: a label's rules
    const lock = await this.lockAgent(a, t, 'pin');
    try {
      // an interrupted import's snapshot is forgotten by the recovery: first, so it is never pinned and
      // then forgotten with its pin by the next operation (stop 62 review)
      await this.recoverInterrupted(a, t);
      const found = await this.findSnapshot(a, t, id);
      if (found.repository) {
        // Under the agent's repository lock, and only while the snapshot is still listed (stop 47): a
        // delete or retention on another host forgets it under the same lock, so "pinned" is never
        // reported for a snapshot that is gone (NOT_FOUND instead), and delete never misses a pin.
        await this.repository.pin(a, t, found.repository.id, note);
        // a bundle of the same id (stored, not removed yet) is the same snapshot: it is pinned too, with
        // the same note, as unpin removes both pins and delete refuses when either copy is pinned
        const copy = await bundleCopyOf(this.layout.snapshotsDir(t, a), found.repository.id);
        if (copy) await pinBundle(copy.path, note);
        const { pin_note: _was, ...meta } = found.repository;
        return { ...meta, pinned: true, ...(note ? { pin_note: note } : {}) };
      }
      const file = found.bundle;
      await pinBundle(file.path, note);
      return { ...(await bundleMeta(file)), pinned: true, ...(note ? { pin_note: note } : {}) };
    } finally {
      lock.release();
    }
  }

  /** Removes a pin; false when the snapshot was not pinned. */
  async unpin(agentId: string, tenant: string | undefined, id: string): Promise<boolean> {
    const a = validateAgentId(agentId);
    const t = validateTenant(tenant ?? DEFAULT_TENANT);
    const lock = await this.lockAgent(a, t, 'unpin');
    try {
      const found = await this.findSnapshot(a, t, id);
      if (found.repository) {
        // a bundle of the same id (stored, not removed yet) is the same snapshot: its pin goes too
        const was = found.repository.pinned === true;
        await this.repository.setPinned(found.repository.id, false);
        const copy = await bundleCopyOf(this.layout.snapshotsDir(t, a), found.repository.id);
        const bundleWas = copy ? await unpinBundle(copy.path) : false;
        return was || bundleWas;
      }
      return await unpinBundle(found.bundle.path);
    } finally {
      lock.release();
    }
  }

  async list(agentId: string, tenant: string = DEFAULT_TENANT): Promise<SnapshotMeta[]> {
    const a = validateAgentId(agentId);
    const t = validateTenant(tenant);
    const [{ metas, warnings }, inRepository] = await Promise.all([
      listDir(this.layout.snapshotsDir(t, a), a, t),
      this.repository.list(a, t),
    ]);
    for (const w of warnings) this.warn(w);
    if (inRepository.length === 0) return metas;
    if (metas.length === 0) return inRepository; // already newest first (a repository may list 10,000)
    // A snapshot in both stores (a bundle migrate or `import --store-only` stored but did not remove) is
    // one snapshot, listed once (the repository's), pinned when either copy is (with its note).
    const bundles = new Map(metas.map((m) => [m.id, m]));
    const ids = new Set(inRepository.map((m) => m.id));
    const merged = inRepository.map((m) => {
      const b = bundles.get(m.id);
      if (!b?.pinned || m.pinned) return m;
      return { ...m, pinned: true, ...(b.pin_note !== undefined ? { pin_note: b.pin_note } : {}) };
    });
    return [...merged, ...metas.filter((m) => !ids.has(m.id))].sort(
      (x, y) => y.created_at_ms - x.created_at_ms || (x.id < y.id ? 1 : -1),
    );
  }

  /**
   * The id a snapshot reference names: `latest` (any case) is the agent's newest snapshot in either
   * store, as `list` orders them (NOT_FOUND when it has none); an id or prefix is returned as it is.
   */
  async snapshotRef(agentId: string, tenant: string | undefined, ref: string): Promise<string> {
    if (textArgument('the snapshot', ref).trim().toLowerCase() !== LATEST) return ref;
    const a = validateAgentId(agentId);
    const t = validateTenant(tenant ?? DEFAULT_TENANT);
    const [newest] = await this.list(a, t);
    if (!newest)
      throw new NotFoundError(
        LATEST,
        undefined,
        `agent ${a} (tenant ${t}) has no snapshot: none is "${LATEST}"`,
      );
    return newest.id;
  }

  /**
   * Verifies a bundle file, or the repository snapshot a `bundle_path` of list names. The one trust
   * rule of every verify: `opts.trust` when given (then a trusted signature is required), else the
   * snapshotter's trusted keys (required when it requires signatures), else none.
   */
  async verify(bundlePath: string, opts: VerifyRequestOptions = {}): Promise<VerifyReport> {
    textArgument('the bundle path', bundlePath);
    // the bundle_path of a repository snapshot (list, snapshot) names the snapshot, not a file
    const inRepository = this.repository.idOf(bundlePath);
    if (inRepository) return this.verifyInRepository(inRepository, opts);
    const { trust, decryptIdentity, ...rest } = opts;
    const [{ verifyBundleFile }, { loadIdentities }, verifyTrust] = await Promise.all([
      import('../verify/verify.js'),
      import('../crypto/age.js'),
      this.verifyTrust(trust),
    ]);
    return verifyBundleFile(bundlePath, {
      ...rest,
      ...(decryptIdentity ? { identities: loadIdentities(decryptIdentity) } : {}),
      ...(verifyTrust ? { trust: verifyTrust } : {}),
    });
  }

  /** The trust of a verify (see verify): of `trust` when given, else the snapshotter's when it has keys. */
  private async verifyTrust(trust: string[] | undefined): Promise<TrustPolicy | undefined> {
    if (trust !== undefined)
      return (await import('../format/signature.js')).trustPolicy(trust, trust.length > 0);
    const own = (await this.policies()).trust;
    return own.keys.length > 0 ? own : undefined;
  }

  /**
   * One of the agent's snapshots by id or unique prefix, verified as `verify` does; the agent's readers
   * lock is held meanwhile, so retention and delete leave the bundle alone until the report is made.
   * A snapshot whose manifest names another agent, tenant or snapshot (findSnapshot: a forged listing
   * entry, another agent's bundle under this agent's name, an older bundle copied over a newer one) is
   * not verified: the report is `damaged` with BUNDLE_DAMAGED naming the entry, and tells nothing of
   * that snapshot (stop 45: its own agent_id and label were in it).
   */
  async verifySnapshot(
    agentId: string,
    tenant: string | undefined,
    id: string,
    opts: VerifyRequestOptions = {},
  ): Promise<VerifyReport> {
    const found = await this.inspectSnapshot(agentId, tenant, id, { decryptIdentity: opts.decryptIdentity });
    if (found.refusal) {
      const { emptyReport } = await import('../verify/verify.js');
      const report = emptyReport(
        found.repository ? found.repository.bundle_path : found.bundle.path,
        found.repository ? found.repository.encrypted : found.bundle.encrypted,
      );
      report.problems.push({
        code: 'BUNDLE_DAMAGED',
        path: found.refusal.entry,
        message: found.refusal.problem,
      });
      return report;
    }
    if (found.repository) return this.verifyInRepository(found.repository.id, opts);
    const { file, reading } = await this.locateForReading(agentId, tenant, found.bundle.id, 'verify');
    try {
      return await this.verify(file.path, opts);
    } finally {
      reading.release();
    }
  }

  /** verify of the repository snapshot `id` (its full id), with the trust rule of every verify. */
  private async verifyInRepository(id: string, opts: VerifyRequestOptions): Promise<VerifyReport> {
    const { trust, decryptIdentity, deep, onProgress } = opts;
    const verifyTrust = await this.verifyTrust(trust);
    try {
      return (
        await this.repository.verify(id, {
          ...(deep ? { deep: true } : {}),
          ...(decryptIdentity ? { decryptIdentity } : {}),
          ...(onProgress ? { onProgress } : {}),
          ...(verifyTrust ? { trust: verifyTrust } : {}),
        })
      ).report;
    } catch (err) {
      // An encrypted repository and no identity at all: not fully verified (exit 3), as an encrypted
      // bundle without one; a wrong identity stays an ENCRYPTION error (exit 7).
      if (!(err instanceof EncryptionError) || decryptIdentity || this.identityPath) throw err;
      const meta = (await this.repository.listAll()).find((m) => m.id === id);
      if (!meta?.encrypted) throw err;
      const { emptyReport } = await import('../verify/verify.js');
      const report = emptyReport(meta.bundle_path, true);
      report.status = 'incomplete';
      report.not_checked.push({
        check: 'contents',
        reason:
          'encrypted repository and no identity given (--decrypt-identity): manifest, seals and data were not checked (the listing entry is there)',
      });
      return report;
    }
  }

  /**
   * A repository snapshot of the agent by id or unique prefix, or undefined (then look for a bundle);
   * its manifest not read: findSnapshot's part.
   */
  private async findInRepository(
    agentId: string,
    tenant: string | undefined,
    id: string,
  ): Promise<ListingMeta | undefined> {
    const a = validateAgentId(agentId);
    const t = validateTenant(tenant ?? DEFAULT_TENANT);
    return this.repository.find(a, t, await this.snapshotRef(a, t, id));
  }

  /**
   * One of the agent's snapshots by id, unique prefix or `latest`, in either store — the one way every
   * command given a snapshot reaches it (verify, export and the download, diff, ls, cat, restore, pin,
   * unpin, delete, the API's meta, the MCP tools). Its manifest is read (`decryptIdentity`, else the
   * configured identity, opens it) and must name that snapshot, agent and tenant (by-id.ts): else
   * BUNDLE_DAMAGED naming the listing entry or the file, without naming whose it is. A manifest that
   * cannot be read gives no verdict (`unreadable`): the operation meets that itself. No lock is taken;
   * a prefix that matches in both stores is ambiguous.
   */
  async findSnapshot(
    agentId: string,
    tenant: string | undefined,
    id: string,
    opts: { decryptIdentity?: string | undefined } = {},
  ): Promise<FoundSnapshot> {
    const { refusal, ...found } = await this.inspectSnapshot(agentId, tenant, id, opts);
    if (refusal) throw refusal;
    return found;
  }

  /** findSnapshot, with the refusal returned rather than thrown (verify reports it). */
  private async inspectSnapshot(
    agentId: string,
    tenant: string | undefined,
    id: string,
    opts: { decryptIdentity?: string | undefined },
  ): Promise<FoundSnapshot & { refusal?: ForeignSnapshotError }> {
    const a = validateAgentId(agentId);
    const t = validateTenant(tenant ?? DEFAULT_TENANT);
    const [located, { checkFound }] = await Promise.all([this.locateById(a, t, id), import('./by-id.js')]);
    return checkFound(this, located, a, t, opts);
  }

  /** The snapshot an id, prefix or `latest` names in either store, its manifest not read (findSnapshot). */
  private async locateById(agentId: string, tenant: string, id: string): Promise<LocatedSnapshot> {
    id = await this.snapshotRef(agentId, tenant, id);
    const inRepository = await this.findInRepository(agentId, tenant, id);
    const bundle = await this.locateSnapshot(agentId, tenant, id).catch((err: unknown) => {
      if (err instanceof NotFoundError || (inRepository && err instanceof InvalidInputError))
        return undefined;
      throw err;
    });
    if (inRepository && bundle && bundle.id !== inRepository.id)
      throw new InvalidInputError(
        `snapshot id prefix ${id} is ambiguous: ${inRepository.id} (repository) and ${bundle.id} (bundle)`,
      );
    if (inRepository) return { repository: inRepository };
    if (bundle) return { bundle };
    throw new NotFoundError(id);
  }

  /** `nexo-memory check`: the repository's structure, and with readData its packs. */
  async check(opts: CheckOptions & { decryptIdentity?: string } = {}): Promise<CheckReport> {
    if (!(await this.repository.exists()))
      throw new NotFoundError('(repository)', undefined, `no repository at ${this.repository.location}`);
    return this.repository.check(opts);
  }

  /** `nexo-memory prune`: removes data no snapshot references, under the exclusive repository lock. */
  async prune(opts: PruneOptions & { decryptIdentity?: string } = {}): Promise<PruneReport> {
    if (!(await this.repository.exists()))
      throw new NotFoundError('(repository)', undefined, `no repository at ${this.repository.location}`);
    return this.repository.prune(opts);
  }

  /** The bundle file of one of the agent's snapshots, by id or unique prefix (no lock is taken). */
  async locateSnapshot(agentId: string, tenant: string | undefined, id: string): Promise<BundleFile> {
    const a = validateAgentId(agentId);
    const t = validateTenant(tenant ?? DEFAULT_TENANT);
    return locate(this.layout.snapshotsDir(t, a), await this.snapshotRef(a, t, id));
  }

  async delete(agentId: string, tenant: string | undefined, id: string): Promise<DeleteResult> {
    const started = performance.now();
    const record = (durationMs: number) => ({
      op: 'delete' as const,
      agentId: String(agentId),
      tenant: String(tenant ?? DEFAULT_TENANT),
      durationMs,
    });
    return this.observed(
      this.deleteSteps(agentId, tenant, id),
      started,
      (result, durationMs) => ({ ...record(durationMs), outcome: 'ok', result }),
      (error, durationMs) => ({ ...record(durationMs), outcome: error.outcome, error }),
    );
  }

  private async deleteSteps(agentId: string, tenant: string | undefined, id: string): Promise<DeleteResult> {
    const a = validateAgentId(agentId);
    const t = validateTenant(tenant ?? DEFAULT_TENANT);
    const found = await this.findSnapshot(a, t, id);
    const inRepository = found.repository;
    const dir = this.layout.snapshotsDir(t, a);
    if (inRepository) {
      const lock = await this.lockAgent(a, t, 'delete');
      let readers: HeldLock | undefined;
      try {
        // The agent lock is this host's (a file of its state root): every check that decides below is
        // made under the agent's repository lock too (stop 47), which a delete, pin or retention on any
        // host takes, and on what the repository holds now — two hosts deleting the agent's last two
        // snapshots at once deleted both, and a pin on another host between findSnapshot and the forget
        // was removed with the snapshot it had just reported pinned.
        return await this.repository.lockedAgent(a, t, 'delete', async (repoLock) => {
          const listedNow = await this.repository.list(a, t);
          const current = listedNow.find((m) => m.id === inRepository.id);
          if (!current) throw new NotFoundError(inRepository.id, 'deleted meanwhile');
          // The last snapshot is the last real one (stop 45): a listing entry without its manifest (or
          // with another agent's) counts for nothing here, as for retention. Deleting such an entry is
          // how it is cleaned up, so it is removed whatever else there is.
          if (await this.repository.anyReal([current])) {
            const repoIds = new Set(listedNow.map((m) => m.id));
            const others = (await this.list(a, t)).filter((m) => m.id !== current.id);
            if (!others.some((m) => !repoIds.has(m.id)) && !(await this.repository.anyReal(others)))
              throw new RetentionError(lastSnapshotRefusal(a, t));
          }
          if (current.pinned) throw pinnedError(current.id);
          // A bundle of the same id (stored by migrate or `import --store-only`, not removed yet) is the
          // same snapshot: refused when it is pinned, and removed with it (first: until the repository
          // copy is forgotten, list shows the snapshot unchanged, and a kill leaves a delete to repeat).
          const copy = await bundleCopyOf(dir, inRepository.id);
          if (copy) {
            if (existsSync(pinPathOf(copy.path))) throw pinnedError(inRepository.id);
            readers = await this.takeLock(
              this.layout.readersLockPath(t, a),
              'exclusive',
              a,
              t,
              'delete',
              READERS,
            );
            await removeBundleFiles(dir, copy.path);
          }
          await repoLock.check(); // lost (judged stale elsewhere): the checks above may no longer hold
          await this.repository.forget(inRepository.id, { agentId: a, tenant: t });
          return {
            id: inRepository.id,
            agent_id: a,
            tenant: t,
            bundle_path: inRepository.bundle_path,
            removed: [inRepository.bundle_path, ...(copy ? [copy.path] : [])],
          };
        });
      } finally {
        readers?.release();
        lock.release();
      }
    }
    const file = found.bundle!;
    const lock = await this.lockAgent(a, t, 'delete');
    let readers: HeldLock | undefined;
    try {
      readers = await this.takeLock(this.layout.readersLockPath(t, a), 'exclusive', a, t, 'delete', READERS);
      const all = await bundleFiles(dir);
      if (!all.some((f) => f.path === file.path)) throw new NotFoundError(file.id, 'deleted meanwhile');
      // the agent's snapshots in both stores: every bundle file (a damaged one too, which list skips)
      // and each repository snapshot that is not also one of them
      const ids = new Set(all.map((f) => f.id));
      // a repository entry counts only when it is a real snapshot (stop 45: not a ghost entry)
      const repoOnly = (await this.repository.list(a, t)).filter((m) => !ids.has(m.id));
      if (all.length <= 1 && !(await this.repository.anyReal(repoOnly))) {
        throw new RetentionError(lastSnapshotRefusal(a, t));
      }
      if (existsSync(pinPathOf(file.path))) throw pinnedError(file.id);
      await removeBundleFiles(dir, file.path);
      return { id: file.id, agent_id: a, tenant: t, bundle_path: file.path, removed: [file.path] };
    } finally {
      readers?.release();
      lock.release();
    }
  }

  /**
   * A bundle of the agent found by id or unique prefix, with the agent's readers lock held shared (other
   * readers share it; delete and retention wait or skip until the caller releases it).
   */
  async locateForReading(
    agentId: string,
    tenant: string | undefined,
    id: string,
    operation: string,
  ): Promise<{ file: BundleFile; reading: HeldLock }> {
    const a = validateAgentId(agentId);
    const t = validateTenant(tenant ?? DEFAULT_TENANT);
    const file = await locate(this.layout.snapshotsDir(t, a), await this.snapshotRef(a, t, id));
    const path = this.layout.readersLockPath(t, a);
    try {
      return { file, reading: await this.takeLock(path, 'shared', a, t, operation, REMOVERS) };
    } catch (err) {
      // A state root nothing can be written in (a backup mounted read-only for a disaster recovery):
      // the lock only holds off a delete or retention, which cannot run there either (stop 46).
      const { unheldLock, unwritableDir } = await import('../store/lock.js');
      const why = err instanceof ConcurrentError ? undefined : await unwritableDir(dirname(path));
      if (!why) throw err;
      this.warn(
        why === 'EROFS'
          ? `the state root is read-only (EROFS): this ${operation} reads snapshot ${file.id} without the readers lock (nothing can delete it meanwhile)`
          : `the state root's lock directory is not writable (EACCES): this ${operation} reads snapshot ${file.id} without the readers lock (a delete by a user who can write there is not held off)`,
      );
      return { file, reading: unheldLock(path) };
    }
  }

  async export(
    agentId: string,
    tenant: string | undefined,
    id: string,
    target: string,
    opts: ExportOptions = {},
  ): Promise<ExportResult> {
    textArgument('the export target', target);
    const found = await this.findSnapshot(agentId, tenant, id, { decryptIdentity: opts.decryptIdentity });
    if (found.repository) {
      const { exportRepoSnapshot } = await import('./repo-export.js');
      return exportRepoSnapshot(this, found.repository, target, opts);
    }
    const { file, reading } = await this.locateForReading(agentId, tenant, found.bundle.id, 'export');
    try {
      const { decryptIdentity, trust, redact, ...rest } = opts;
      if (redact !== undefined && typeof redact !== 'boolean')
        throw new InvalidInputError('redact must be a boolean');
      const [{ exportBundle }, { loadIdentities }, { trustPolicy }, policies] = await Promise.all([
        import('./export.js'),
        import('../crypto/age.js'),
        import('../format/signature.js'),
        this.policies(),
      ]);
      return await exportBundle(file, target, this.storeDirs(), {
        ...rest,
        redact: redact ?? this.redactExports,
        policy: policies.redaction,
        signingKey: policies.signingKey,
        zstd: { level: this.zstdLevel, workers: this.zstdWorkers },
        ...(decryptIdentity ? { identities: loadIdentities(decryptIdentity) } : {}),
        // the configured trusted keys as verify uses them: checked (a refusal only when required)
        ...(trust !== undefined
          ? { trust: trustPolicy(trust, trust.length > 0) }
          : policies.trust.keys.length > 0
            ? { trust: policies.trust }
            : {}),
      });
    } catch (err) {
      if (err instanceof SnapshotError) throw err;
      throw asSnapshotError(err, `exporting ${file.path}`);
    } finally {
      reading.release();
    }
  }

  // -- reading memory as of a snapshot (browse/: ls, cat, find; docs/browse.md) ---------------------

  async ls(
    agentId: string,
    tenant: string | undefined,
    id: string,
    path = '',
    opts: LsOptions & { decryptIdentity?: string } = {},
  ): Promise<LsResult> {
    const { lsSnapshot } = await import('../browse/browse.js');
    return lsSnapshot(this, agentId, tenant, id, path, opts);
  }

  async cat(
    agentId: string,
    tenant: string | undefined,
    id: string,
    path: string,
    opts: CatOptions & { decryptIdentity?: string } = {},
  ): Promise<CatResult> {
    const { catSnapshot } = await import('../browse/browse.js');
    return catSnapshot(this, agentId, tenant, id, path, opts);
  }

  async find(req: FindRequest): Promise<FindResult> {
    const { findInSnapshots } = await import('../browse/find.js');
    return findInSnapshots(this, req);
  }
}
