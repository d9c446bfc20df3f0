// Owns the restore journal and the swap it protects. Before anything live changes, a journal lists
// every component's live, staged and backup path and the state values before and after; each
// component is then swapped by renames (live → backup, staged → live) and the state replayed; writing
// the journal again as `committed` is the commit point. After a crash, recover() rolls every component
// back when the journal never committed, or finishes the clean-up when it did: the live agent is
// always entirely the old state or entirely the restored one. The filesystem itself tells how far each
// component got, so the journal is written only twice.

import { existsSync } from 'node:fs';
import { readFile, rename, rm, rmdir, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { StateProvider } from '../agent/state.js';
import { keepingNumbers } from '../format/json.js';
import { jsonText } from '../format/json-number.js';
import { canonicalJson } from '../format/seal.js';
import { IoError, JournalDamagedError } from '../model/errors.js';
import { idAfterPrefix } from '../model/ids.js';
import { DB_NAMES, SQLITE_EXTRAS, STATE_KEYS, type StateKey } from '../model/types.js';
import { writeFileAtomic } from '../store/atomic.js';
import { JOURNAL_EXT } from '../store/paths.js';
import { faultPoint } from '../util/faults.js';
import { fsyncDir } from '../util/new-file.js';
import { restorePaths } from './stage.js';

/** One component swapped by rename: a database (with its -wal/-shm/-journal) or the memdir. */
export interface SwapItem {
  component: string;
  live: string;
  /** The restored version; absent when the component is only moved aside (absent from the bundle). */
  staged?: string;
  backup: string;
  /** Whether the live path existed when the journal was written. */
  had_live: boolean;
  /** Suffixes of files that travel with `live` (SQLite's -wal, -shm, -journal). */
  extras: string[];
}

export interface StateChange {
  key: StateKey;
  old?: unknown;
  new?: unknown;
}

export interface Journal {
  journal_version: 1;
  restore_id: string;
  agent_id: string;
  tenant: string;
  snapshot_id: string;
  bundle: string;
  phase: 'prepared' | 'committed';
  created_at_ms: number;
  items: SwapItem[];
  state: StateChange[];
  /** Staging paths to remove once the restore has committed or rolled back. */
  staging: string[];
  /** Directories made to hold backups: removed (when empty) if the restore rolls back. */
  backup_dirs: string[];
  /** The pre-restore anchor the restore took (since stop 47): recorded for `--undo` once it commits. */
  anchor?: string;
}

export { SQLITE_EXTRAS } from '../model/types.js';

export async function writeJournal(path: string, j: Journal): Promise<void> {
  await writeFileAtomic(path, `${jsonText(j, 2)}\n`, 0o600);
}

/**
 * The journal at `path`, or undefined when there is none. One that cannot be read as a journal this
 * package writes (truncated, garbled, another shape or version) is JournalDamagedError: it guards a swap
 * that may be half done, so it is never skipped or removed here.
 */
export async function readJournal(path: string): Promise<Journal | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new IoError(`reading restore journal ${path}`, err);
  }
  let j: unknown;
  try {
    j = keepingNumbers(text, JSON.parse(text));
  } catch (err) {
    throw damaged(path, `not JSON: ${(err as Error).message}`, err);
  }
  const problem = journalProblem(j);
  if (problem) throw damaged(path, problem);
  return j as Journal;
}

function damaged(path: string, why: string, cause?: unknown): JournalDamagedError {
  // `<state root>/tenants/<tenant>/journals/<agent>.restore.json` (StoreLayout.journalPath)
  const name = basename(path);
  const who = name.endsWith(JOURNAL_EXT)
    ? { agentId: name.slice(0, -JOURNAL_EXT.length), tenant: basename(dirname(dirname(path))) }
    : undefined;
  return new JournalDamagedError(path, why, who, cause === undefined ? undefined : { cause });
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isStrings = (v: unknown): boolean => Array.isArray(v) && v.every(isString);
const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** What makes `j` no journal this package writes (what recover reads of it), or undefined. */
function journalProblem(j: unknown): string | undefined {
  if (!isObject(j)) return 'not a JSON object';
  if (j.journal_version !== 1)
    return typeof j.journal_version === 'number' && j.journal_version > 1
      ? `journal_version ${j.journal_version}, written by a newer nexo-memory-snapshot: recover with that version`
      : 'no journal_version 1';
  if (j.phase !== 'prepared' && j.phase !== 'committed') return 'phase is neither prepared nor committed';
  for (const k of ['restore_id', 'agent_id', 'tenant'] as const)
    if (!isString(j[k])) return `${k} is not a string`;
  if (!Array.isArray(j.items)) return 'items is not a list';
  for (const item of j.items) {
    if (
      !isObject(item) ||
      !isString(item.component) ||
      !isString(item.live) ||
      !isString(item.backup) ||
      (item.staged !== undefined && !isString(item.staged)) ||
      typeof item.had_live !== 'boolean' ||
      !isStrings(item.extras)
    )
      return 'an item is not {component, live, staged?, backup, had_live, extras}';
  }
  if (!Array.isArray(j.state) || !j.state.every((c) => isObject(c) && isString(c.key)))
    return 'state is not a list of {key, old?, new?}';
  if (!isStrings(j.staging)) return 'staging is not a list of paths';
  if (j.backup_dirs !== undefined && !isStrings(j.backup_dirs)) return 'backup_dirs is not a list of paths';
  return undefined;
}

/** The agent a journal is recovered for: where its restore can have put anything. */
export interface JournalOwner {
  agentId: string;
  tenant: string;
  memdir: string;
  sqliteDir: string;
  /** The agent's snapshots directory (the restore's work directory is in it). */
  snapshotsDir: string;
}

/**
 * What makes `j` a journal no restore of `owner` writes, or undefined: recover renames, removes and
 * writes what a journal names, so every path must be one a restore of this agent (by the journal's
 * restore id) uses under these roots, and every state key one it replays (stop 61 review: a journal
 * naming any path had recover remove or replace it).
 */
export function journalMismatch(j: Journal, owner: JournalOwner): string | undefined {
  if (j.agent_id !== owner.agentId || j.tenant !== owner.tenant)
    return `it is agent ${JSON.stringify(j.agent_id)}'s (tenant ${JSON.stringify(j.tenant)}), not ${owner.agentId}'s (tenant ${owner.tenant})`;
  if (idAfterPrefix(j.restore_id, '') === undefined) return 'restore_id is not a restore id';
  const p = restorePaths(owner.memdir, owner.sqliteDir, owner.snapshotsDir, j.restore_id);
  const dbFiles = DB_NAMES.map((db) => `${db}.sqlite`);
  const inStage = (path: string): boolean =>
    dirname(path) === p.sqliteStage && dbFiles.includes(basename(path));
  for (const item of j.items) {
    const db = item.component.startsWith('sqlite.') ? item.component.slice('sqlite.'.length) : undefined;
    const fits =
      item.component === 'memdir'
        ? item.live === owner.memdir &&
          (item.staged === undefined || item.staged === p.memdirStage) &&
          item.backup === p.memdirBackup
        : db !== undefined &&
          (DB_NAMES as readonly string[]).includes(db) &&
          item.live === join(owner.sqliteDir, `${db}.sqlite`) &&
          (item.staged === undefined || inStage(item.staged)) &&
          item.backup === join(p.sqliteBackup, `${db}.sqlite`);
    if (!fits)
      return `its item ${JSON.stringify(item.component)} names paths a restore of this agent under these roots does not use (was the restore run with other --memdir-root or --sqlite-root?)`;
    if (!item.extras.every((e) => (SQLITE_EXTRAS as readonly string[]).includes(e)))
      return `its item ${JSON.stringify(item.component)} has extras other than ${SQLITE_EXTRAS.join(', ')}`;
  }
  const staging = new Set([p.sqliteStage, p.memdirStage, p.work]);
  if (!j.staging.every((s) => staging.has(s)))
    return "staging names a path that is not this restore's staging";
  if (!(j.backup_dirs ?? []).every((d) => d === p.sqliteBackup))
    return "backup_dirs names a path that is not this restore's backup directory";
  if (!j.state.every((c) => (STATE_KEYS as readonly string[]).includes(c.key)))
    return `state has a key other than ${STATE_KEYS.join(', ')}`;
  return undefined;
}

const exists = (p: string): boolean => existsSync(p);

async function move(from: string, to: string): Promise<void> {
  await rename(from, to);
  await fsyncDir(dirname(to));
  if (dirname(from) !== dirname(to)) await fsyncDir(dirname(from));
}

/** live → backup (with its extras), then staged → live. Each step is one rename, fault-injectable. */
export async function swapIn(item: SwapItem): Promise<void> {
  for (const ext of item.extras) {
    if (exists(item.live + ext)) await move(item.live + ext, item.backup + ext);
  }
  faultPoint(`restore.swap.${item.component}.aside`);
  if (exists(item.live)) await move(item.live, item.backup);
  faultPoint(`restore.swap.${item.component}.in`);
  if (item.staged) await move(item.staged, item.live);
}

/** Puts the old version back, whatever step the swap of this item reached. Idempotent. */
export async function rollBack(item: SwapItem): Promise<void> {
  if (exists(item.backup)) {
    if (exists(item.live)) await rm(item.live, { recursive: true, force: true });
    await move(item.backup, item.live);
  } else if (!item.had_live && item.staged && !exists(item.staged) && exists(item.live)) {
    await rm(item.live, { recursive: true, force: true }); // the restored version went in where nothing was
    await fsyncDir(dirname(item.live)); // gone for good before the journal that records it is: stop 63
  }
  for (const ext of item.extras) {
    if (!exists(item.backup + ext)) continue;
    if (exists(item.live + ext)) await unlink(item.live + ext);
    await move(item.backup + ext, item.live + ext);
  }
}

/** Rolls every component back (last first), then the state; removes backup dirs left empty. */
export async function rollBackAll(provider: StateProvider, j: Journal): Promise<void> {
  faultPoint('restore.rollback');
  for (const item of [...j.items].reverse()) await rollBack(item);
  await replayState(provider, j, 'old');
  for (const d of j.backup_dirs ?? []) await rmdir(d).catch(() => {});
}

export async function replayState(
  provider: StateProvider,
  j: Pick<Journal, 'agent_id' | 'tenant' | 'state'>,
  which: 'old' | 'new',
): Promise<void> {
  for (const change of j.state) {
    const value = which === 'old' ? change.old : change.new;
    // a value that is the one to put already is left as it is, its file's bytes too: stop 54, a rollback
    // rewrote every state file of the agent (the same values, written again in another layout); stop 61,
    // a restore rewrote a state file it reported unchanged
    if (await holds(provider, change.key, j, value)) continue;
    await provider.restore(change.key, j.agent_id, j.tenant, value);
  }
}

/** Whether the provider's current value of `key` is `value` (false when it cannot be read). */
async function holds(
  provider: StateProvider,
  key: StateKey,
  j: Pick<Journal, 'agent_id' | 'tenant'>,
  value: unknown,
): Promise<boolean> {
  try {
    const now = await provider.capture(key, j.agent_id, j.tenant);
    if (now === undefined || value === undefined) return now === value;
    return canonicalJson(now) === canonicalJson(value);
  } catch {
    return false;
  }
}

/**
 * Removes the restore's staging, each directory on its own: one that cannot be removed (an I/O error, a
 * read-only remount) stays as a leftover of the agent for a later operation to remove, and neither stops
 * the others nor keeps the journal, whose rollback or commit is done (stop 54: a staging directory that
 * could not be removed left the journal `prepared` after its rollback, and every later operation on the
 * agent refused to start).
 */
async function removeStaging(j: Journal): Promise<void> {
  for (const p of j.staging) await rm(p, { recursive: true, force: true }).catch(() => {});
}

/**
 * Completes an interrupted restore from its journal: a committed one is finished (clean-up only), any
 * other is rolled back (every component, then the state). The journal is removed at the end.
 */
export async function recoverJournal(
  journalPath: string,
  provider: StateProvider,
  /** The agent it is recovered for: a journal naming anything else is JournalDamagedError, untouched. */
  owner: JournalOwner,
  /**
   * Called for a committed restore before its journal goes: what the commit had still to do that must
   * not be lost with the journal (an import's record, stop 55; the record for --undo, stop 61).
   */
  onCommitted?: (j: Journal) => Promise<void>,
): Promise<{ journal: Journal; outcome: 'rolled_back' | 'completed' } | undefined> {
  const j = await readJournal(journalPath);
  if (!j) return undefined;
  const mismatch = journalMismatch(j, owner);
  if (mismatch) throw damaged(journalPath, mismatch);
  let outcome: 'rolled_back' | 'completed';
  if (j.phase === 'committed') {
    await onCommitted?.(j);
    outcome = 'completed';
  } else {
    await rollBackAll(provider, j);
    outcome = 'rolled_back';
  }
  await removeStaging(j);
  await removeJournal(journalPath).catch(() => {});
  faultPoint('restore.recovered');
  return { journal: j, outcome };
}

/** Normal end of a restore: remove staging and the journal. */
export async function finishJournal(journalPath: string, j: Journal): Promise<void> {
  faultPoint('restore.cleanup');
  await removeStaging(j);
  await removeJournal(journalPath).catch(() => {});
}

/**
 * Removes a journal for good: its directory is synced after the unlink, so a power cut cannot bring a
 * `prepared` journal back after its rollback, whose second rollback would remove a database the agent
 * created since where the restore had put one that did not exist before (stop 61 review). (A committed
 * one coming back would only be finished again.) A journal already gone is fine; a failed unlink throws
 * (the journal stays, for the caller to say so); a failed sync leaves the removal as it was before.
 */
export async function removeJournal(journalPath: string): Promise<void> {
  await unlink(journalPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await fsyncDir(dirname(journalPath)).catch(() => {});
}
