// Owns the record of when an agent's last automatic snapshot of a kind was taken
// (`locks/<agent>.<kind>.last`, JSON `{created_at_ms, snapshot_id}`), read and written under the agent
// lock so a throttle holds across processes. It is a throttle's memory, not data: written without
// fsync (one lost to a power cut means one more snapshot), and an unreadable one counts as absent.

import { readFile } from 'node:fs/promises';
import type { SnapshotMeta } from '../model/types.js';
import { writeFileAtomicUnsynced } from './atomic.js';

/** The record: when the last one was taken, and its id (absent in a record that names none). */
export async function readLastTaken(
  path: string,
): Promise<{ created_at_ms: number; snapshot_id?: string } | undefined> {
  try {
    const v = JSON.parse(await readFile(path, 'utf8')) as { created_at_ms?: unknown; snapshot_id?: unknown };
    if (!Number.isSafeInteger(v?.created_at_ms)) return undefined;
    return {
      created_at_ms: v.created_at_ms as number,
      ...(typeof v.snapshot_id === 'string' ? { snapshot_id: v.snapshot_id } : {}),
    };
  } catch {
    return undefined;
  }
}

export function writeLastTaken(path: string, meta: Pick<SnapshotMeta, 'id' | 'created_at_ms'>): void {
  writeFileAtomicUnsynced(
    path,
    `${JSON.stringify({ created_at_ms: meta.created_at_ms, snapshot_id: meta.id })}\n`,
  );
}
