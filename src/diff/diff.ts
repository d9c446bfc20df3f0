// Owns a diff between two sides (snapshot ids or unique prefixes of bundles or repository snapshots, or
// `live`): materialises both in one
// temporary directory that is always removed, then compares history, working tree, databases and
// state. The result keeps the original's SnapshotDiff fields, now carrying real numbers, and adds
// the per-file and per-table detail. Differences that are only redactions (placeholders on one side
// for the other side's secrets) are reported as such, not as changes; every value the result shows
// goes through the redaction rules unless the caller asks for the values as stored (`showSecrets`).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Identity, loadIdentities } from '../crypto/age.js';
import { canonicalJson } from '../format/manifest.js';
import { EncryptionError, InvalidInputError, UnknownAgentError } from '../model/errors.js';
import { DEFAULT_TENANT, validateAgentId, validateTenant } from '../model/ids.js';
import { DB_NAMES, type DbName } from '../model/types.js';
import { bundleView } from '../repository/manifest.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import { privateScratch, removeScratch } from '../util/scratch.js';
import { allSettledOrThrow } from '../util/settle.js';
import { fitDetail } from './fit.js';
import { commitsBetween, type FileChange, treeChanges } from './memdir.js';
import { placeholdersInJson, showJson } from './secrets.js';
import {
  bundleSide,
  type Contents,
  contentsOf,
  liveSide,
  repositorySide,
  type Side,
  SKIP_NOTHING,
  type Skip,
} from './sides.js';
import { type DatabaseDiff, diffDatabase, identicalDatabase, type SecretsView } from './sqlite.js';

export const LIVE = 'live';

/** Whether a diff side names the live agent (`live`, in any case, as `latest`). */
export const isLiveRef = (ref: string): boolean => ref.trim().toLowerCase() === LIVE;

export interface SnapshotDiff {
  a: string;
  b: string;
  git_summary: {
    /** Commits reachable from b's HEAD and not from a's. */
    commits_between: number;
    files_changed: number;
    insertions: number;
    deletions: number;
    /** Commits reachable from a's HEAD and not from b's (added). */
    commits_reverse: number;
    head_a?: string;
    head_b?: string;
  };
  sqlite_summary: {
    long_term_rows_added: number;
    long_term_rows_removed: number;
    vector_rows_added: number;
    vector_rows_removed: number;
    concepts_rows_added: number;
    concepts_rows_removed: number;
    compactions_added: number;
  };
  state_summary: { extract_cursor_changed: boolean; last_dream_run_changed: boolean };
  files: FileChange[];
  databases: DatabaseDiff[];
  /** With --detail: both values of each state entry. */
  state?: { extract_cursor: { a?: unknown; b?: unknown }; dream_run: { a?: unknown; b?: unknown } };
  /** With --detail: `state` was left out to keep the diff within `maxDetailBytes`. */
  state_omitted?: true;
  /** With `maxDetailBytes`: some patches were cut, or sample rows or state left out, to keep within it. */
  detail_truncated?: true;
  /**
   * How secrets are treated: `output` says whether the values shown (patches, rows, state) went through
   * the redaction rules (`redacted`, the default) or are as stored (`shown`, --show-secrets); `files`,
   * `rows` and `state` count what differs only by redaction (not counted as changed above).
   */
  redactions: { output: 'redacted' | 'shown'; files: number; rows: number; state: string[] };
}

/** The bound on each file's patch the HTTP API and MCP ask for: 1 MiB, as `cat`'s. */
export const DIFF_PATCH_MAX_BYTES = 1024 * 1024;

export interface DiffRequest {
  agentId: string;
  tenant?: string;
  a: string;
  b: string;
  detail?: boolean;
  /**
   * With detail: each file's patch cut to its first whole lines within this many bytes
   * (`patch_truncated`, `patch_bytes` say so); whole patches when unset. The HTTP API and MCP pass
   * DIFF_PATCH_MAX_BYTES.
   */
  maxPatchBytes?: number;
  /**
   * With detail: the patches, sample rows and state values of the whole diff within this many bytes
   * (fit.ts: what does not fit is cut or left out, `detail_truncated` says so); unbounded when unset.
   * The agent tool passes AGENT_DIFF_DETAIL_MAX_BYTES.
   */
  maxDetailBytes?: number;
  /** Show values (patches, rows, state) as stored, secrets included; default: redacted. */
  showSecrets?: boolean;
  /** Identity file for age-encrypted bundles. */
  decryptIdentity?: string;
}

/**
 * A side as named on the command line: `live`, or one of the agent's snapshots (a bundle or a repository
 * snapshot) with its manifest's contents.
 */
type Ref =
  | { live: true }
  | { live: false; id: string; contents: Contents; bundle: string }
  | { live: false; id: string; contents: Contents; repository: true };

async function resolveRef(
  s: LocalSnapshotter,
  agentId: string,
  tenant: string,
  ref: string,
  identities: Identity[] | undefined,
  identityPath: string | undefined,
): Promise<Ref> {
  if (isLiveRef(ref)) return { live: true };
  // the one way to a snapshot by id: its manifest, read and checked to be this agent's (findSnapshot)
  const found = await s.findSnapshot(agentId, tenant, ref, { decryptIdentity: identityPath });
  if (found.repository) {
    if (!found.manifest) throw found.unreadable;
    return {
      live: false,
      id: found.manifest.snapshot_id,
      contents: contentsOf(bundleView(found.manifest)),
      repository: true,
    };
  }
  const file = found.bundle;
  if (file.encrypted && !identities)
    throw new EncryptionError('the bundle is age-encrypted: pass --decrypt-identity to diff it');
  if (!found.manifest) throw found.unreadable;
  return { live: false, id: file.id, bundle: file.path, contents: contentsOf(found.manifest) };
}

/**
 * What each side need not write, decided from the manifests before either body is read: files with
 * the same hash on both sides (neither writes them), and identical databases (only side a writes them).
 */
function skipsFor(a: Ref, b: Ref): [Skip, Skip] {
  if (a.live || b.live) return [SKIP_NOTHING, SKIP_NOTHING];
  const files = new Set<string>();
  for (const [rel, sha] of a.contents.files) if (b.contents.files.get(rel) === sha) files.add(rel);
  const dbs = new Set<DbName>();
  for (const [db, sha] of a.contents.dbs) if (b.contents.dbs.get(db) === sha) dbs.add(db);
  return [
    { files, dbs: new Set() },
    { files, dbs },
  ];
}

function sideOf(
  s: LocalSnapshotter,
  agentId: string,
  tenant: string,
  ref: Ref,
  other: Ref,
  skip: Skip,
  dir: string,
  identities: Identity[] | undefined,
  identityPath: string | undefined,
): Promise<Side> {
  if (ref.live) return liveSide(s, agentId, tenant, dir, other.live ? undefined : other.contents);
  if ('repository' in ref) return repositorySide(s, ref.id, ref.id, dir, identityPath, skip);
  return bundleSide(ref.id, ref.bundle, dir, identities, skip);
}

/**
 * Live against live is a read, but it closes the agent's write gate of `tenant`, whose file that makes:
 * the agent must be one of that tenant, checked before anything is created (stop 51: a read token's
 * `diff?a=live&b=live&tenant=junk1` made `tenants/junk1/locks/<agent>.gate`). Its memory must exist
 * there, and where that memory is the default tenant's (the default resolver ignores the tenant) the
 * tenant must know the agent: a snapshot of it, or its gate already made by a writer or an operation of
 * that tenant. A snapshot side found in the tenant is such a snapshot, so only live against live asks.
 */
async function checkLiveAgent(s: LocalSnapshotter, agentId: string, tenant: string): Promise<void> {
  const searched = [
    s.resolver.memdir(agentId, tenant),
    s.resolver.sqliteDir(agentId, tenant),
    s.resolver.stateDir(agentId, tenant),
  ];
  if (!(await s.agentExists(agentId, tenant))) throw new UnknownAgentError(agentId, tenant, searched);
  if (
    tenant === DEFAULT_TENANT ||
    !s.sharesLiveMemory(agentId, tenant) ||
    existsSync(s.layout.writeGatePath(tenant, agentId)) ||
    (await s.list(agentId, tenant)).length > 0
  )
    return;
  throw new UnknownAgentError(
    agentId,
    tenant,
    searched,
    `the tenant has no snapshot of it and no writer of it (its live memory is the default tenant's: diff it there)`,
  );
}

const sum = (d: DatabaseDiff | undefined, f: 'added' | 'removed'): number =>
  d ? d.tables.reduce((n, t) => n + t[f], 0) : 0;

export async function diffSnapshots(s: LocalSnapshotter, req: DiffRequest): Promise<SnapshotDiff> {
  const agentId = validateAgentId(req.agentId);
  const tenant = validateTenant(req.tenant ?? DEFAULT_TENANT);
  const detail = req.detail === true;
  if (req.maxPatchBytes !== undefined && (!Number.isSafeInteger(req.maxPatchBytes) || req.maxPatchBytes < 1))
    throw new InvalidInputError(`maxPatchBytes must be a positive integer, got ${req.maxPatchBytes}`);
  if (
    req.maxDetailBytes !== undefined &&
    (!Number.isSafeInteger(req.maxDetailBytes) || req.maxDetailBytes < 0)
  )
    throw new InvalidInputError(`maxDetailBytes must be an integer ≥ 0, got ${req.maxDetailBytes}`);
  const identities = req.decryptIdentity ? loadIdentities(req.decryptIdentity) : undefined;
  const tmp = await privateScratch('diff');
  try {
    const [ra, rb] = await allSettledOrThrow([
      resolveRef(s, agentId, tenant, req.a, identities, req.decryptIdentity),
      resolveRef(s, agentId, tenant, req.b, identities, req.decryptIdentity),
    ]);
    // live against live of an agent that has no memory here compares nothing with nothing: unknown
    // (a snapshot side names the agent: live against it shows what is gone)
    if (ra.live && rb.live) await checkLiveAgent(s, agentId, tenant);
    const [skipA, skipB] = skipsFor(ra, rb);
    const [a, b] = await allSettledOrThrow([
      sideOf(s, agentId, tenant, ra, rb, skipA, join(tmp, 'a'), identities, req.decryptIdentity),
      sideOf(s, agentId, tenant, rb, ra, skipB, join(tmp, 'b'), identities, req.decryptIdentity),
    ]);
    const policy = (await s.policies()).redaction;
    const secrets: SecretsView = {
      policy,
      shown: { policy: req.showSecrets === true ? undefined : policy },
      labels: { a: a.label, b: b.label },
    };
    const [commits, allFiles] = await allSettledOrThrow([
      commitsBetween(a, b, join(tmp, 'history')),
      treeChanges(a, b, tmp, detail, secrets, req.maxPatchBytes),
    ]);
    const files = allFiles.filter((f) => f.status !== 'redacted');
    const databases = DB_NAMES.filter((db) => a.dbHashes.has(db) || b.dbHashes.has(db)).map((db) =>
      a.dbHashes.has(db) && a.dbHashes.get(db) === b.dbHashes.get(db)
        ? identicalDatabase(db, (a.dbs.get(db) ?? b.dbs.get(db))!, detail)
        : diffDatabase(db, a.dbs.get(db), b.dbs.get(db), detail, secrets),
    );
    const byDb = (db: string) => databases.find((d) => d.db === db);
    const redactedState = (['extract_cursor', 'dream_run'] as const).filter(
      (key) => placeholdersInJson(policy, a.state.get(key), b.state.get(key)) !== undefined,
    );
    const changed = (key: 'extract_cursor' | 'dream_run') =>
      !redactedState.includes(key) &&
      canonicalJson(a.state.get(key) ?? null) !== canonicalJson(b.state.get(key) ?? null);
    const show = (v: unknown) => showJson(secrets.shown, v);
    const diff: SnapshotDiff = {
      a: a.label,
      b: b.label,
      git_summary: {
        commits_between: commits.forward,
        files_changed: files.length,
        insertions: files.reduce((n, f) => n + f.insertions, 0),
        deletions: files.reduce((n, f) => n + f.deletions, 0),
        commits_reverse: commits.reverse,
        ...(a.head ? { head_a: a.head } : {}),
        ...(b.head ? { head_b: b.head } : {}),
      },
      sqlite_summary: {
        long_term_rows_added: sum(byDb('long_term'), 'added'),
        long_term_rows_removed: sum(byDb('long_term'), 'removed'),
        vector_rows_added: sum(byDb('vector'), 'added'),
        vector_rows_removed: sum(byDb('vector'), 'removed'),
        concepts_rows_added: sum(byDb('concepts'), 'added'),
        concepts_rows_removed: sum(byDb('concepts'), 'removed'),
        compactions_added: sum(byDb('compactions'), 'added'),
      },
      state_summary: {
        extract_cursor_changed: changed('extract_cursor'),
        last_dream_run_changed: changed('dream_run'),
      },
      files: allFiles,
      databases,
      ...(detail
        ? {
            state: {
              extract_cursor: {
                a: show(a.state.get('extract_cursor')),
                b: show(b.state.get('extract_cursor')),
              },
              dream_run: { a: show(a.state.get('dream_run')), b: show(b.state.get('dream_run')) },
            },
          }
        : {}),
      redactions: {
        output: req.showSecrets === true ? 'shown' : 'redacted',
        files: allFiles.length - files.length,
        rows: databases.reduce((n, d) => n + d.tables.reduce((m, t) => m + t.redacted, 0), 0),
        state: redactedState,
      },
    };
    return detail && req.maxDetailBytes !== undefined ? fitDetail(diff, req.maxDetailBytes) : diff;
  } finally {
    await removeScratch(tmp);
  }
}
