// Owns orchestrating a restore (and its variants: dry run, import as another agent, undo) from either
// source (restore-source.ts: a bundle file or a repository snapshot): check the snapshot's signature
// (when one is required or present), rules, identity and redaction (a redacted snapshot is restored in
// place only when allowed; a dry run lists its placeholders) from its manifest → take the agent lock →
// finish any interrupted restore → verify and stage in one streaming pass beside the live paths → check
// every staged database and the rebuilt repository → host hook → write gate closed (so no write falls
// between the anchor and the swap): pre-restore snapshot, pre-restore tag moved to HEAD, journal, swap
// by renames, state replay, commit → host hook → clean up. Any
// failure before the commit point puts every component back; nothing is changed before every check
// passed.

import { existsSync } from 'node:fs';
import { lstat, readFile, readlink, rm, rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { agentComponentsInMemdir } from '../agent/components-in-memdir.js';
import { type Identity, loadIdentities } from '../crypto/age.js';
import { sqlitePath, statePath } from '../format/constants.js';
import { stateValueOf, valueDepthProblem } from '../format/json.js';
import { jsonText } from '../format/json-number.js';
import type { Manifest } from '../format/manifest.js';
import { signatureRefusal, trustPolicy } from '../format/signature.js';
import { inspectRepo } from '../git/git.js';
import {
  asSnapshotError,
  BundleDamagedError,
  CrossTenantError,
  InvalidInputError,
  IoError,
  NotFoundError,
  RedactedBundleError,
  RestoreRefusedError,
  StateProviderError,
  StoreUnavailableError,
} from '../model/errors.js';
import { DEFAULT_TENANT, LATEST, newSnapshotId, validateAgentId, validateTenant } from '../model/ids.js';
import {
  type ComponentChange,
  DB_NAMES,
  type DbName,
  type RestoreReport,
  type RestoreRequest,
  STATE_KEYS,
  type StateKey,
} from '../model/types.js';
import {
  finishJournal,
  type Journal,
  readJournal,
  removeJournal,
  replayState,
  rollBackAll,
  SQLITE_EXTRAS,
  type SwapItem,
  swapIn,
  writeJournal,
} from '../restore/journal.js';
import { keepLiveModes, keepMemdirModes } from '../restore/modes.js';
import { findPlaceholders, placeholderArtifacts } from '../restore/placeholders.js';
import { planDatabases, planMemdir, uncapturedWarning } from '../restore/plan.js';
import {
  buildMemdir,
  bundleHasMemdir,
  dropReaderFiles,
  refreshPreRestoreTag,
  refuseForeignEntries,
  restorePaths,
} from '../restore/stage.js';
import { readUndoRecord, writeUndoRecord } from '../restore/undo-record.js';
import type { RowCounts } from '../sqlite/rows.js';
import { type SqliteJobs, sqliteRunners, sqliteThreadsMinBytes } from '../sqlite/worker.js';
import { syncFileSystemsOf } from '../store/atomic.js';
import { faultPoint } from '../util/faults.js';
import { makeDirs } from '../util/make-dirs.js';
import { packageModule } from '../util/module-worker.js';
import { privateScratch, removeScratch } from '../util/scratch.js';
import { allSettledOrThrow } from '../util/settle.js';
import { problemsError } from '../verify/verify.js';
import type { AgentLock, LocalSnapshotter } from './local.js';
import { importedBundleFile, locateSource, type RestoreSource, type SourceHead } from './restore-source.js';

/** Whether the bundle is this agent's (its ids were validated with the manifest's rules). */
function checkIdentity(m: Manifest, agentId: string, tenant: string, importing: boolean): void {
  if (importing) return;
  if (m.agent_id !== agentId) {
    throw new RestoreRefusedError(
      `the bundle's agent_id ${m.agent_id} does not match ${agentId} (to clone an agent, use import)`,
    );
  }
  if (m.tenant !== tenant) {
    throw new CrossTenantError(
      `cross-tenant restore refused: the bundle belongs to tenant ${m.tenant}, not ${tenant} (to clone across tenants, use import)`,
      'message',
    );
  }
}

async function readStateValues(work: string, m: Manifest): Promise<Map<string, unknown>> {
  const out = new Map<string, unknown>();
  for (const key of STATE_KEYS) {
    if (!m.artifacts.some((a) => a.path_in_bundle === statePath(key))) continue;
    out.set(key, stateValueOf(await readFile(join(work, statePath(key))), statePath(key)));
  }
  return out;
}

function baseReport(
  m: Manifest,
  agentId: string,
  tenant: string,
  bundle: string,
  dryRun: boolean,
): RestoreReport {
  return {
    agent_id: agentId,
    from: m.snapshot_id,
    sqlite_restored_dbs: DB_NAMES.filter((db) =>
      m.artifacts.some((a) => a.path_in_bundle === sqlitePath(db)),
    ),
    state_files_restored: STATE_KEYS.filter((k) =>
      m.artifacts.some((a) => a.path_in_bundle === statePath(k)),
    ),
    workers_restarted: false,
    dry_run: dryRun,
    tenant,
    bundle,
    sqlite_removed_dbs: [],
    backups: [],
    redacted: m.redactions !== undefined,
    ...(m.redactions
      ? {
          redaction: {
            policy: m.redactions.policy,
            rules_applied: m.redactions.rules_applied,
            matches_redacted: m.redactions.matches_redacted,
            ...(m.redactions.git_history ? { git_history: m.redactions.git_history } : {}),
          },
        }
      : {}),
    components: [],
    warnings: [],
    ...(m.agent_id !== agentId || m.tenant !== tenant
      ? { imported_from: { agent_id: m.agent_id, tenant: m.tenant } }
      : {}),
  };
}

/**
 * The live value of `key`, which a restore replaces and puts back if it fails. One that cannot be read
 * (a state file that is not JSON) refuses the restore, the live agent unchanged: its message says how
 * to go on without losing the file (docs/restore.md).
 */
async function liveStateValue(
  s: LocalSnapshotter,
  key: StateKey,
  agentId: string,
  tenant: string,
): Promise<unknown> {
  let value: unknown;
  try {
    value = await s.state.capture(key, agentId, tenant);
  } catch (err) {
    if (err instanceof StateProviderError)
      throw new StateProviderError(unreadableStateHint(err), { cause: err });
    throw err;
  }
  // a value nested deeper than a state value may be could be neither compared nor journaled (each of
  // those recursed until the stack overflowed: an untyped `IO` error)
  const deep = value === undefined ? undefined : valueDepthProblem(value);
  if (deep !== undefined)
    throw new StateProviderError(
      unreadableStateHint(new StateProviderError(`the live state value ${key} cannot be read back: ${deep}`)),
    );
  return value;
}

/** A STATE error's message with the way out for a restore (the value must be read to be put back). */
function unreadableStateHint(err: StateProviderError): string {
  return `${err.message.replace(/^state provider: /, '')} (a restore reads the live value to put it back should the restore fail: move the file aside, keeping it, and restore again)`;
}

async function stateChanges(
  s: LocalSnapshotter,
  agentId: string,
  tenant: string,
  incoming: Map<string, unknown>,
): Promise<ComponentChange[]> {
  const out: ComponentChange[] = [];
  for (const key of STATE_KEYS) {
    const old = await liveStateValue(s, key, agentId, tenant);
    const next = incoming.get(key);
    if (old === undefined && next === undefined) continue;
    // compared as written (a JsonNumber by its digits, not as the string it is shown as)
    const same = (old === undefined ? '' : jsonText(old)) === (next === undefined ? '' : jsonText(next));
    out.push({
      component: `state:${key}`,
      action: same ? 'unchanged' : next === undefined ? 'remove' : old === undefined ? 'create' : 'replace',
    });
  }
  return out;
}

/**
 * What an import into a repository runs inside the restore's hold of the agent lock (import.ts): its
 * store before the restore begins, the removal of its record once the restore has committed, and the
 * forget of what it stored when the restore fails.
 */
export interface ImportSteps {
  beforeRestore: () => Promise<void>;
  afterCommit: () => Promise<void>;
  onFailure: () => Promise<void>;
}

export async function restoreAgent(
  s: LocalSnapshotter,
  req: RestoreRequest,
  within?: ImportSteps,
): Promise<RestoreReport> {
  const agentId = validateAgentId(req.agentId);
  const tenant = validateTenant(req.tenant ?? DEFAULT_TENANT);
  const identities = req.decryptIdentity ? loadIdentities(req.decryptIdentity) : undefined;
  const policies = await s.policies();
  // The anchor's signing key is read (and cached) now: an unreadable key fails the restore before it starts.
  policies.signingKey();
  if (req.undo && (req.bundle !== undefined || req.snapshot !== undefined))
    throw new InvalidInputError('a restore takes either undo or a bundle or snapshot, not both');
  // An import's source is a bundle file: not a repository snapshot's `<repository>#<id>` (stop 51).
  if (req.import && req.bundle !== undefined) await importedBundleFile(req.bundle);
  // A name whose snapshot moves as snapshots are taken (`latest`, the undo's anchor) is resolved with
  // the agent's lock already held, so the snapshot restored is the one the name meant when the restore
  // ran, not when it was queued behind another restore or snapshot. Other names are read first, and
  // refused before any lock.
  const moving = req.undo === true || req.snapshot?.trim().toLowerCase() === LATEST;
  const held =
    moving && !req.dryRun ? await s.lockAgent(agentId, tenant, req.import ? 'import' : 'restore') : undefined;
  let handedOver = false;
  try {
    // an interrupted restore is finished or rolled back first: the undo's anchor is that of the last
    // restore that committed, which the recovery may have just finished
    if (held && req.undo) await s.recoverInterrupted(agentId, tenant);
    const named = req.undo ? { ...req, snapshot: await undoAnchor(s, agentId, tenant) } : req;
    const report = await restoreResolved(
      s,
      named,
      agentId,
      tenant,
      identities,
      policies,
      held,
      within,
      () => {
        handedOver = true;
      },
    );
    return report;
  } finally {
    if (!handedOver) held?.release();
  }
}

async function restoreResolved(
  s: LocalSnapshotter,
  req: RestoreRequest,
  agentId: string,
  tenant: string,
  identities: readonly Identity[] | undefined,
  policies: Awaited<ReturnType<LocalSnapshotter['policies']>>,
  held: AgentLock | undefined,
  within: ImportSteps | undefined,
  handOver: () => void,
): Promise<RestoreReport> {
  const source = await locateSource(s, req, agentId, tenant, identities);
  // Trusted keys given with the request require a signature unless the request says otherwise.
  const trust =
    req.trust !== undefined || req.requireSignature !== undefined
      ? trustPolicy(
          req.trust ?? policies.trust.keys.map((k) => k.publicKey),
          req.requireSignature ?? (req.trust?.length ? true : policies.trust.required),
        )
      : policies.trust;
  // The manifest, read first: everything below is refused before any lock, staging or snapshot.
  const head = await source.head(trust.keys);
  // Authenticity before anything else acts on the manifest.
  const refusal = signatureRefusal(head.signature, trust);
  if (refusal) throw refusal;
  // Every rule on the manifest that verify applies: identity, layout, git block.
  if (head.problems.length > 0) throw problemsError(head.problems);
  checkIdentity(head.manifest, agentId, tenant, req.import !== undefined);
  checkRedaction(head.manifest, req);
  await checkMemdirNotLink(s.resolver.memdir(agentId, tenant));
  const signature = head.signature;
  try {
    if (!req.dryRun) handOver(); // restoreLocked releases the lock, whatever happens
    const report = await (req.dryRun
      ? dryRun(s, req, agentId, tenant, source, head.manifest)
      : restoreLocked(s, req, agentId, tenant, source, head, within, held));
    return {
      ...report,
      signature: { status: signature.status, ...(signature.key_id ? { key_id: signature.key_id } : {}) },
    };
  } catch (err) {
    throw asSnapshotError(err, `restore of agent ${agentId}`);
  }
}

/**
 * A memdir that is a symbolic link is refused: the swap renames the memdir's path, so it would replace
 * the link with a directory and leave the directory it pointed at as it was (the agent, reading through
 * its own path, would see no restore). Snapshots read through the link.
 */
async function checkMemdirNotLink(memdir: string): Promise<void> {
  const st = await lstat(memdir).catch(() => undefined);
  if (!st?.isSymbolicLink()) return;
  const target = await readlink(memdir).catch(() => '?');
  throw new RestoreRefusedError(
    `the memdir ${memdir} is a symbolic link (to ${target}): a restore swaps the directory at that path ` +
      'and would replace the link, not what it points at; point memdir_root (--memdir-root) at the real directory',
  );
}

/**
 * A redacted bundle restored in place would write its placeholders over the live agent's secrets:
 * refused unless the request allows it. Dry runs (which list where) and imports (a new agent, nothing
 * live replaced) never need it; a bundle whose redaction replaced nothing is an exact copy.
 */
function checkRedaction(m: Manifest, req: RestoreRequest): void {
  const red = m.redactions;
  if (!red || red.matches_redacted === 0 || req.dryRun || req.import || req.allowRedacted === true) return;
  // what the manifest says of them, in parentheses; none when it names no rule (a v1 bundle may not:
  // stop 47 found "placeholders ()") and the history was not rewritten
  const said = [
    ...(red.rules_applied.length > 0 ? [red.rules_applied.join(', ')] : []),
    ...(red.git_history === 'rewritten' ? ['its git history was rewritten'] : []),
  ].join('; ');
  throw new RedactedBundleError(
    `snapshot ${m.snapshot_id} is redacted: ${red.matches_redacted} secret(s) were replaced by placeholders` +
      `${said ? ` (${said})` : ''}, ` +
      'and restoring it would write them over the live values; restore an exact snapshot, or pass ' +
      '--allow-redacted (library: allowRedacted) to restore it anyway (restore --dry-run lists where)',
    { matches_redacted: red.matches_redacted, rules_applied: red.rules_applied },
  );
}

async function dryRun(
  s: LocalSnapshotter,
  req: RestoreRequest,
  agentId: string,
  tenant: string,
  source: RestoreSource,
  headManifest: Manifest,
): Promise<RestoreReport> {
  const tmp = await privateScratch('dry-run');
  try {
    // the memory files the redaction touched are read too, to say where their placeholders are
    const touched = placeholderArtifacts(headManifest);
    const v = await source.inspect(
      (a) =>
        a.kind.startsWith('sqlite_') ||
        a.kind.startsWith('state_') ||
        (a.kind === 'memory_file' && touched.has(a.path_in_bundle))
          ? join(tmp, a.path_in_bundle)
          : undefined,
      req.onProgress,
    );
    const m = v.manifest;
    const report = baseReport(m, agentId, tenant, source.location, true);
    if (touched.size > 0) {
      const found = await findPlaceholders(m, v.written);
      report.placeholders = found.list;
      report.placeholders_total = found.total;
    }
    report.warnings.push(...v.warnings);
    const memdir = s.resolver.memdir(agentId, tenant);
    const sqliteDir = s.resolver.sqliteDir(agentId, tenant);
    const mem = await planMemdir(
      m,
      memdir,
      undefined,
      agentComponentsInMemdir(memdir, sqliteDir, s.state, agentId, tenant),
      v.refs,
    );
    const lost = uncapturedWarning(mem);
    if (lost) report.warnings.push(lost);
    report.components = [
      ...(await planDatabases(m, sqliteDir, v.written)),
      ...(mem ? [mem] : []),
      ...(await stateChanges(s, agentId, tenant, await readStateValues(tmp, m))),
    ];
    report.sqlite_removed_dbs = report.components
      .filter((c) => c.action === 'remove' && c.component.startsWith('sqlite:'))
      .map((c) => c.component.slice(7));
    if (mem?.head?.new) report.git_reset_oid = mem.head.new; // v1 too: HEAD as its manifest records it
    return report;
  } finally {
    await removeScratch(tmp);
  }
}

async function restoreLocked(
  s: LocalSnapshotter,
  req: RestoreRequest,
  agentId: string,
  tenant: string,
  source: RestoreSource,
  head: SourceHead,
  within?: ImportSteps,
  held?: AgentLock,
): Promise<RestoreReport> {
  const lock = held ?? (await s.lockAgent(agentId, tenant, req.import ? 'import' : 'restore'));
  const memdir = s.resolver.memdir(agentId, tenant);
  const sqliteDir = s.resolver.sqliteDir(agentId, tenant);
  const snapDir = s.layout.snapshotsDir(tenant, agentId);
  try {
    await s.recoverInterrupted(agentId, tenant);
    if (req.import && !req.import.force && (await s.agentExists(agentId, tenant))) {
      throw new RestoreRefusedError(
        `agent ${agentId} (tenant ${tenant}) already has memory; pass --force to replace it`,
      );
    }
    await within?.beforeRestore();
    const restoreId = newSnapshotId();
    const p = restorePaths(
      memdir,
      sqliteDir,
      snapDir,
      restoreId,
      agentComponentsInMemdir(memdir, sqliteDir, s.state, agentId, tenant),
    );
    // The databases live in the memdir (the default layout): they are staged in the staged memdir and
    // swapped in with it, by one rename; the live ones go to the memdir's backup with it.
    const dbsInMemdir = p.components.sqliteRel !== undefined;
    const staging = [p.sqliteStage, p.memdirStage, p.work];
    // directories this restore creates to stage in (a new agent's, an import's): removed again when
    // they are left empty, so a refused import leaves no trace that would make the agent seem to exist
    const created = [sqliteDir, snapDir].filter((d) => !existsSync(d));
    // The databases are checked on two threads when they are large (sqlite/worker.ts), else here.
    const dbBytes = head.manifest.artifacts.reduce(
      (n, a) => (a.kind.startsWith('sqlite_') ? n + a.size_bytes : n),
      0,
    );
    const sqlite = sqliteRunners(dbBytes);
    // The staged databases are checked on the two threads (or here), and the report's row counts (the
    // live database's and the staged one's) taken after each check when the databases are large enough
    // to pay for loading the counting module there (small ones are counted on this thread, below). The
    // checks start as soon as the source has written every database (`onStaged`: a bundle's come first,
    // and are checked beside its memory files, whose creating kept the threads idle ~0.5 s of ref-170's
    // restore, docs/operations.md "stop 60"); or once it returns.
    // (Counting the live databases first, while the source streams, was measured: the stream slowed by
    // as much as the end gained, docs/operations.md "stop 42".)
    const counted = new Map<string, RowCounts>();
    const rows = packageModule(import.meta.url, '../sqlite/rows');
    const countHere = dbBytes < sqliteThreadsMinBytes();
    type Staged = { db: DbName; file: string }[];
    const check = async (w: SqliteJobs, lane: Staged) => {
      for (const { db, file } of lane) {
        const result = await w.integrityCheck(file);
        if (result !== 'ok')
          throw new BundleDamagedError(`${sqlitePath(db)}: integrity_check failed: ${result}`);
        if (countHere) continue;
        for (const path of [file, join(sqliteDir, `${db}.sqlite`)])
          counted.set(path, await w.call<RowCounts>(rows, 'rowCounts', path));
      }
    };
    let checks: { staged: Staged; lanes: [Promise<void>, Promise<void>] } | undefined;
    const startChecks = (written: ReadonlyMap<string, string>) => {
      if (checks) return;
      const staged = DB_NAMES.flatMap((db) => {
        const file = written.get(sqlitePath(db));
        return file ? [{ db, file }] : [];
      });
      const lanes: [Promise<void>, Promise<void>] = [
        check(
          sqlite[0]!,
          staged.filter((_, i) => i % 2 === 0),
        ),
        check(
          sqlite[1]!,
          staged.filter((_, i) => i % 2 === 1),
        ),
      ];
      for (const l of lanes) l.catch(() => {}); // awaited below, or before the threads close
      checks = { staged, lanes };
    };
    try {
      // (the real errno when a root is read-only: EROFS, not the ENOENT of Node's recursive mkdir)
      await makeDirs(p.work);
      await makeDirs(p.sqliteStage);
      await makeDirs(p.memdirStage);
      // The live repository, read once beside the stream: the pre-restore tag and the report need it.
      const liveRepo = inspectRepo(memdir);
      liveRepo.catch(() => {}); // its users turn a failure into a warning, or none
      // A source that stages the history before the databases rebuilds the repository meanwhile.
      const v = await source.stage(
        p,
        head.raw,
        req.onProgress,
        bundleHasMemdir(head.manifest)
          ? (history, worktree) => buildMemdir(p, history, memdir, liveRepo, worktree)
          : undefined,
        startChecks,
        // large databases are written on the SQLite threads (a repository snapshot's), idle until the checks
        countHere ? undefined : sqlite,
      );
      // the stream has ended: what follows has no byte counts, each step says it has begun
      req.onProgress?.({ phase: 'check', bytes: 0 });
      const m = v.manifest;
      const report = baseReport(m, agentId, tenant, source.location, false);
      report.restore_id = restoreId;
      report.warnings.push(...v.warnings);
      // Databases are checked on two worker threads while git rebuilds the repository beside them.
      const hasMemdir = bundleHasMemdir(m);
      startChecks(v.written);
      const { staged, lanes } = checks!;
      // Flushing the staged bytes to disk starts now and overlaps the checks; so does describing what
      // the restore changes in the memdir (it reads the live memdir only, on this otherwise idle thread).
      const [, , , repo, memdirChange] = await allSettledOrThrow([
        syncFileSystemsOf([p.sqliteStage, p.memdirStage]),
        lanes[0],
        lanes[1],
        hasMemdir
          ? v.tree
            ? Promise.resolve(v.tree)
            : buildMemdir(p, v.history, memdir, liveRepo)
          : Promise.resolve(undefined),
        planMemdir(m, memdir, liveRepo, p.components, v.refs),
      ] as const);
      report.warnings.push(...(repo?.warnings ?? []));
      const lost = uncapturedWarning(memdirChange);
      if (lost) report.warnings.push(lost);
      const incoming = await readStateValues(p.work, m);
      report.components = [
        ...(await planDatabases(m, sqliteDir, v.written, counted)),
        ...(memdirChange ? [memdirChange] : []),
        ...(await stateChanges(s, agentId, tenant, incoming)),
      ];

      const info = { agentId, tenant, restoreId };
      try {
        await req.hooks?.beforeSwap?.(info);
      } catch (err) {
        throw new RestoreRefusedError(`the host's beforeSwap hook failed: ${(err as Error).message}`);
      }

      // The checks' and counts' read-only connections leave a WAL database's -shm (and an empty -wal)
      // beside each staged copy; staged in the memdir, they would be swapped in with it.
      if (dbsInMemdir) for (const { file } of staged) await dropReaderFiles(file);
      const journalPath = s.layout.journalPath(tenant, agentId);
      // Everything staged (now including the rebuilt repository) is on disk before the swap makes it live.
      await syncFileSystemsOf([p.sqliteStage, p.memdirStage]);

      // What the swap replaces, and the journal, are read with the gate closed: what a writer did until
      // then (a database created, a state value set) is what a rollback must put back.
      const gate = await s.closeWriteGate(agentId, tenant, req.import ? 'import' : 'restore');
      let journalWritten = false;
      let journal!: Journal;
      /** What failed after the committed journal was written (the restore stands; recovery finishes it). */
      let afterCommitFailure: Error | undefined;
      try {
        // The anchor: a snapshot of the current state, inside the same lock, after every check passed, and
        // with the gate already closed for the swap, so no write falls between the anchor and the swap
        // (writers wait for the anchor too; a restore refused at the gate leaves no anchor behind).
        if (req.autoPreSnapshot !== false && (await s.agentExists(agentId, tenant))) {
          req.onProgress?.({ phase: 'pre_snapshot', bytes: 0 });
          try {
            const pre = await s.snapshotLocked({
              agentId,
              tenant,
              label: `auto:pre-restore-${m.snapshot_id}`,
              createdBy: 'auto-pre-restore',
              memdir,
              sqliteDir,
              dir: snapDir,
              // the anchor of an encrypted restore is encrypted too, to the configured recipients
              recipients: s.recipients,
              // and signed with the configured key, so a host that requires signatures can undo
              signingKey: (await s.policies()).signingKey(),
              onProgress: undefined,
              gateHeld: true,
            });
            report.pre_snapshot = pre.id;
          } catch (err) {
            // Refused either way (nothing live has changed); a store that cannot be used keeps its own
            // code and exit 8 (STORE_*), as every other command's failure on it does.
            const why = `auto-pre-snapshot failed: ${err instanceof StateProviderError ? unreadableStateHint(err) : (err as Error).message}`;
            if (err instanceof StoreUnavailableError)
              throw new StoreUnavailableError(err.code, `restore refused, the live agent unchanged: ${why}`, {
                backend: String(err.details?.backend),
                location: String(err.details?.location),
                cause: err,
              });
            // the cause's errno (ENOSPC: the pre-snapshot's disk is full) stays readable by a script
            const errno = err instanceof IoError ? err.errno : undefined;
            throw new RestoreRefusedError(why, errno ? { errno } : undefined);
          }
        }

        // the tag made while staging, moved to HEAD as the swap replaces it
        if (repo?.preRestoreTag) await refreshPreRestoreTag(p, memdir, repo.preRestoreTag, report.warnings);
        // what goes live is only what the restore staged (under the gate: nothing of the agent's writes there)
        await refuseForeignEntries(p.memdirStage);
        if (!dbsInMemdir) await refuseForeignEntries(p.sqliteStage);

        req.onProgress?.({ phase: 'swap', bytes: 0 });
        const items: SwapItem[] = [];
        for (const db of DB_NAMES) {
          if (dbsInMemdir) {
            if (v.written.has(sqlitePath(db))) continue;
            const live = join(sqliteDir, `${db}.sqlite`);
            if (existsSync(live) || SQLITE_EXTRAS.some((e) => existsSync(live + e)))
              report.sqlite_removed_dbs.push(db);
            continue;
          }
          const live = join(sqliteDir, `${db}.sqlite`);
          const staged = v.written.get(sqlitePath(db));
          const present = existsSync(live) || SQLITE_EXTRAS.some((e) => existsSync(live + e));
          if (!staged && !present) continue;
          items.push({
            component: `sqlite.${db}`,
            live,
            ...(staged ? { staged } : {}),
            backup: join(p.sqliteBackup, `${db}.sqlite`),
            had_live: existsSync(live),
            extras: SQLITE_EXTRAS,
          });
          if (!staged) report.sqlite_removed_dbs.push(db);
        }
        if (hasMemdir || dbsInMemdir || existsSync(memdir)) {
          items.push({
            component: 'memdir',
            live: memdir,
            ...(hasMemdir || dbsInMemdir ? { staged: p.memdirStage } : {}),
            backup: p.memdirBackup,
            had_live: existsSync(memdir),
            extras: [],
          });
        }
        // the memdir, its files and the databases keep the modes (and, as root, the owners) of the ones
        // they replace; new memory files take the memdir root's
        if (items.some((i) => i.component === 'memdir' && i.staged))
          report.warnings.push(...keepMemdirModes(p.memdirStage, memdir));
        const modes = await keepLiveModes([
          ...items.flatMap((i) => (i.staged && i.had_live ? [[i.staged, i.live] as const] : [])),
          ...(dbsInMemdir
            ? DB_NAMES.flatMap((db) => {
                const file = v.written.get(sqlitePath(db));
                return file ? [[file, join(sqliteDir, `${db}.sqlite`)] as const] : [];
              })
            : []),
        ]);
        report.warnings.push(...modes);
        if (items.some((i) => i.component.startsWith('sqlite.'))) await makeDirs(p.sqliteBackup);
        journal = {
          journal_version: 1,
          restore_id: restoreId,
          agent_id: agentId,
          tenant,
          snapshot_id: m.snapshot_id,
          bundle: source.location,
          phase: 'prepared',
          created_at_ms: Date.now(),
          items,
          // read under the gate: a value a writer set a moment ago is the one a rollback puts back
          state: await Promise.all(
            STATE_KEYS.map(async (key) => ({
              key,
              old: await liveStateValue(s, key, agentId, tenant),
              new: incoming.get(key),
            })),
          ),
          staging,
          backup_dirs: [p.sqliteBackup],
          ...(report.pre_snapshot ? { anchor: report.pre_snapshot } : {}),
        };
        await makeDirs(resolve(journalPath, '..'));
        await writeJournal(journalPath, journal);
        journalWritten = true;
        faultPoint('restore.journal.prepared');
        for (const item of items) await swapIn(item);
        faultPoint('restore.state');
        await replayState(s.state, journal, 'new');
        faultPoint('restore.commit');
        await writeJournal(journalPath, { ...journal, phase: 'committed' });
        faultPoint('restore.journal.committed');
        await within?.afterCommit();
        await recordUndo(s, journal, report.warnings);
      } catch (err) {
        if (!journalWritten) await rmdir(p.sqliteBackup).catch(() => {}); // made under the gate, empty
        const phase = journalWritten ? (await readJournal(journalPath))?.phase : undefined;
        if (phase === 'committed') {
          // The live agent is the snapshot's: the commit stands and is no failure to undo (an import
          // would forget the snapshot the agent now is; stop 61 review). What it had still to do (an
          // import's record, the record for --undo, the staging) the recovery of the journal, which
          // stays, finishes at the next operation on the agent.
          afterCommitFailure = err as Error;
        } else if (journalWritten) {
          try {
            await rollBackAll(s.state, journal);
            await removeJournal(journalPath);
          } catch (rollBackErr) {
            // the error the user sees stays the one that stopped the restore (its code and exit status),
            // told that the agent is not back yet and what finishes it: the journal stays for `recover`
            // (stop 54: the rollback's error took its place, saying nothing of the half-swapped agent)
            if (err instanceof Error)
              err.message +=
                `; rolling the restore back failed as well (${(rollBackErr as Error).message}): the journal ` +
                `stays, and \`nexo-memory recover --agent ${agentId}\` (or the next operation on the agent) ` +
                'finishes the rollback';
          }
        }
        if (!afterCommitFailure) throw err;
      } finally {
        await gate.release();
      }
      if (afterCommitFailure)
        report.warnings.push(
          `the restore is committed (the live agent is the snapshot's), but what follows the commit failed ` +
            `(${afterCommitFailure.message}); \`nexo-memory recover --agent ${agentId}\` (or the next operation ` +
            'on the agent) finishes it',
        );

      try {
        if (req.hooks?.afterSwap) {
          await req.hooks.afterSwap(info);
          report.workers_restarted = true;
        }
      } catch (err) {
        report.warnings.push(`the host's afterSwap hook failed: ${(err as Error).message}`);
      }
      // committed: cleaning up may fail (an I/O error) without undoing that: a warning, and the committed
      // journal left finishes it at the next operation on the agent (stop 54: the restore said it failed)
      if (!afterCommitFailure)
        await finishJournal(journalPath, { ...journal, phase: 'committed' }).catch((err: unknown) => {
          report.warnings.push(
            `the restore is done, but removing its staging failed (${(err as Error).message}); the next ` +
              'operation on the agent finishes that',
          );
        });
      // a backup directory that received nothing (a new agent's, an import's) is not a backup
      for (const b of [p.sqliteBackup, p.memdirBackup]) await rmdir(b).catch(() => {});
      report.backups = [p.sqliteBackup, p.memdirBackup].filter((b) => existsSync(b));
      if (repo?.head) report.git_reset_oid = repo.head; // the HEAD of the restored repository (v1 and v2)
      if (repo?.preRestoreTag) report.pre_restore_tag = repo.preRestoreTag;
      return report;
    } finally {
      await Promise.allSettled(checks?.lanes ?? []); // none cut short by the threads' end
      await Promise.all(sqlite.map((w) => w.close()));
      // (never thrown over the restore's outcome: one left is a leftover the next operation removes)
      for (const dir of staging) await rm(dir, { recursive: true, force: true }).catch(() => {});
      for (const dir of created) await rmdir(dir).catch(() => {}); // only when empty
    }
  } catch (err) {
    await within?.onFailure().catch(() => {}); // what stays is forgotten by the next recovery
    throw err;
  } finally {
    lock.release();
  }
}

/**
 * After a restore committed (or the recovery finished one): records its anchor for `--undo`
 * (restore/undo-record.ts), or removes the record of an older restore when it took none. Never fails
 * the committed restore: a record that cannot be written is removed and said in a warning.
 */
export async function recordUndo(s: LocalSnapshotter, j: Journal, warnings: string[]): Promise<void> {
  const path = s.layout.undoRecordPath(j.tenant, j.agent_id);
  try {
    if (j.anchor)
      await writeUndoRecord(path, {
        anchor: j.anchor,
        restore_id: j.restore_id,
        restored: j.snapshot_id,
        committed_at_ms: Date.now(),
      });
    else await rm(path, { force: true });
  } catch (err) {
    await rm(path, { force: true }).catch(() => {});
    warnings.push(
      `could not record this restore for --undo (${(err as Error).message})` +
        (j.anchor ? `: to undo it, restore --from ${j.anchor}` : ''),
    );
  }
}

/**
 * The snapshot `restore --undo` restores: the anchor of the agent's last restore committed through
 * this state root (its undo record). Without a record (no restore here since this version, or one
 * made without an anchor): the newest pre-restore anchor when this state root is the store's only
 * writer (the bundle store, the repository under the state root), with a warning naming it; in a
 * repository given by `repo` (remote or shared), whose anchors may be other hosts', none is guessed.
 */
async function undoAnchor(s: LocalSnapshotter, agentId: string, tenant: string): Promise<string> {
  const listed = await s.list(agentId, tenant);
  const record = await readUndoRecord(s.layout.undoRecordPath(tenant, agentId));
  if (record) {
    if (listed.some((m) => m.id === record.anchor)) return record.anchor;
    throw new NotFoundError(
      record.anchor,
      `it is the pre-restore snapshot of agent ${agentId}'s last restore here (of ${record.restored}), and it was deleted: nothing to undo to`,
    );
  }
  const newest = listed.find((m) => m.created_by === 'auto-pre-restore');
  if (!newest)
    throw new NotFoundError(
      '(pre-restore anchor)',
      `agent ${agentId} has no pre-restore snapshot to undo to`,
    );
  if (s.repositoryShared)
    throw new NotFoundError(
      '(pre-restore anchor)',
      `no restore of agent ${agentId} was made through this state root, so there is none to undo here; the repository's newest pre-restore snapshot, ${newest.id}, may be another host's: restore --from ${newest.id} if it is the one`,
    );
  s.warn(
    `no restore of agent ${agentId} is recorded here: undoing to the newest pre-restore snapshot, ${newest.id}`,
  );
  return newest.id;
}
