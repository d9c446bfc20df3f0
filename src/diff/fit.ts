// Owns fitting a detailed diff into a byte budget (DiffRequest.maxDetailBytes: the agent tool's, whose
// reply goes into a model's context): the files' patches, then each table's sample rows, then the state
// values are kept in that order while they fit; a patch that does not is cut to its first whole lines
// (`patch_truncated`, `patch_bytes`), sample rows or state values that do not are left out
// (`rows_omitted`, `state_omitted`), and the diff says `detail_truncated`. Summaries and counts stay.
// Sizes are counted as the reply writes them, as JSON: a patch of control characters or quotes is up
// to 6× its bytes once escaped (stop 57: counted raw, a 256 KiB budget gave a 1.5 MB reply).

import type { SnapshotDiff } from './diff.js';
import { boundedPatch } from './memdir.js';

const jsonBytes = (v: unknown): number => Buffer.byteLength(JSON.stringify(v) ?? '', 'utf8');
/** A string's size as a JSON string's contents (escaped, without its quotes). */
const shownBytes = (s: string): number => jsonBytes(s) - 2;

/** The patch's first whole lines whose JSON form fits in `max` bytes ('' when none does). */
function cutToFit(patch: string, max: number): string {
  let raw = max;
  while (raw >= 1) {
    const cut = boundedPatch(patch, raw).patch ?? '';
    const shown = shownBytes(cut);
    if (shown <= max) return cut;
    raw = Math.min(raw - 1, Math.floor((raw * max) / shown));
  }
  return '';
}

export function fitDetail(diff: SnapshotDiff, maxBytes: number): SnapshotDiff {
  let left = maxBytes;
  let cut = false;
  const files = diff.files.map((f) => {
    if (f.patch === undefined) return f;
    const shown = shownBytes(f.patch);
    if (shown <= left) {
      left -= shown;
      return f;
    }
    cut = true;
    const whole = f.patch_bytes ?? Buffer.byteLength(f.patch, 'utf8');
    const kept = left > 0 ? cutToFit(f.patch, left) : '';
    left -= shownBytes(kept);
    return { ...f, patch: kept, patch_truncated: true as const, patch_bytes: whole };
  });
  const databases = diff.databases.map((d) => ({
    ...d,
    tables: d.tables.map((t) => {
      if (t.rows === undefined) return t;
      const bytes = jsonBytes(t.rows);
      if (bytes <= left) {
        left -= bytes;
        return t;
      }
      cut = true;
      const { rows: _left_out, ...rest } = t;
      return { ...rest, rows_omitted: true as const };
    }),
  }));
  let state = diff.state;
  let stateOmitted = false;
  if (state !== undefined) {
    const bytes = jsonBytes(state);
    if (bytes <= left) left -= bytes;
    else {
      cut = true;
      state = undefined;
      stateOmitted = true;
    }
  }
  if (!cut) return diff;
  const { state: _state, ...rest } = diff;
  return {
    ...rest,
    files,
    databases,
    ...(state !== undefined ? { state } : {}),
    ...(stateOmitted ? { state_omitted: true as const } : {}),
    detail_truncated: true,
  };
}
