// Owns the record of an agent's last committed restore on this state root: the pre-restore anchor it
// took (the snapshot `restore --undo` goes back to). Written when a restore commits (and by the
// recovery that finishes one), never by a restore that failed or was rolled back, so a retried undo
// after an interrupted one still undoes the restore before it; kept under the state root, so another
// host's restores in a shared repository are not this host's to undo. A record that is not one this
// package writes refuses the undo (RESTORE_REFUSED naming the file), never a guess.

import { readFile } from 'node:fs/promises';
import { IoError, RestoreRefusedError } from '../model/errors.js';
import { writeFileAtomic } from '../store/atomic.js';

export interface UndoRecord {
  undo_version: 1;
  /** The pre-restore anchor: the snapshot of the agent as it was just before the restore. */
  anchor: string;
  /** The restore that took it, and the snapshot it restored. */
  restore_id: string;
  restored: string;
  committed_at_ms: number;
}

export async function writeUndoRecord(path: string, r: Omit<UndoRecord, 'undo_version'>): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify({ undo_version: 1, ...r }, null, 2)}\n`, 0o600);
}

/** The record at `path`, or undefined when there is none. */
export async function readUndoRecord(path: string): Promise<UndoRecord | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new IoError(`reading the undo record ${path}`, err);
  }
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch {
    r = undefined;
  }
  const o = r as Partial<UndoRecord> | undefined;
  const ok =
    o !== null &&
    typeof o === 'object' &&
    o.undo_version === 1 &&
    typeof o.anchor === 'string' &&
    typeof o.restore_id === 'string' &&
    typeof o.restored === 'string' &&
    typeof o.committed_at_ms === 'number';
  if (!ok)
    throw new RestoreRefusedError(
      `the undo record ${path} is not one this version writes: restore with --from <id> (list shows the pre-restore snapshots, created by auto-pre-restore), which writes a new one`,
    );
  return o as UndoRecord;
}
