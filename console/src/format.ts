// Small formatters: sizes, ages, dates, snapshot kinds (the same mapping as the library's fleet.ts).

/** A size; `?` for one not known (null: a repository snapshot's added bytes after its entry was rebuilt). */
export function bytes(n: number | null | undefined): string {
  if (n === undefined) return '—';
  if (n === null) return '?';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

export function age(ms: number | undefined, now = Date.now()): string {
  if (ms === undefined) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86_400).toFixed(1)} d ago`;
}

export const when = (ms: number): string => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);

// The same kinds as the fleet overview's (src/model/kind.ts: pure, bundled in as it is).
export { SNAPSHOT_KINDS as KINDS, snapshotKind as kindOf } from '../../src/model/kind.js';

/**
 * A snapshot id short enough for a table, long enough to tell snapshots apart: ids are UUIDv7, whose
 * first 12 hex digits are the millisecond, so 8 characters are the same for every snapshot of a minute;
 * the first 18 (the millisecond and 12 random bits) differ, and are a prefix the CLI accepts.
 */
export const shortId = (id: string): string => id.slice(0, 18);

/**
 * Direction marks and overrides, other invisible format characters, C0 and C1 controls and DEL (a line
 * break, a terminal escape), and the line and paragraph separators.
 */
const INVISIBLE =
  /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2028\u2029\u2060-\u2069\ufeff]/gu;

/**
 * A name, label or other string a bundle or memory controls, as shown (text, tooltips, the activity
 * panel): each invisible format or control character (a right-to-left override above all, which
 * would show `evil\u202Egpj.md` as "evildm.jpg"; a line break that would start a second line of a
 * tooltip) as a visible `⟨U+202E⟩`.
 */
export const shownName = (s: string): string =>
  s.replace(INVISIBLE, (c) => `⟨U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}⟩`);

/**
 * What ordinary writing uses and text may keep: the zero-width non-joiner and joiner (Persian, Indic
 * scripts, emoji sequences such as 👨‍👩‍👧 and 🏳️‍🌈) and the implicit direction marks (LRM, RLM, ALM),
 * which cannot reorder what follows them the way an override or an isolate does.
 */
const WRITING = new Set(['\u200c', '\u200d', '\u200e', '\u200f', '\u061c']);

/**
 * A text a bundle or memory controls shown on lines of its own (a memory file, a patch, JSON in a
 * `<pre>`): as shownName, but its line ends and tabs kept as they are (`\n`, `\t`, and `\r` before a
 * `\n` or at the text's end: a line of a CRLF file), the layout they make being visible, and the
 * characters of ordinary writing (WRITING) kept.
 */
export const shownText = (s: string): string =>
  s.replace(INVISIBLE, (c, at: number) =>
    c === '\n' || c === '\t' || (c === '\r' && (s[at + 1] === '\n' || at + 1 === s.length)) || WRITING.has(c)
      ? c
      : shownName(c),
  );

/** A pin's note is drawn cut to this many characters (as `list`'s text table: src/cli/format.ts). */
export const PIN_NOTE_SHOWN = 40;

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * A pin's note as drawn beside its flag: at most PIN_NOTE_SHOWN user-perceived characters (an emoji or
 * a flag is not split; a longer note ends in `…`, the whole one is in the tooltip), then through
 * shownName, as every string a bundle or an operator controls.
 */
export function shownPinNote(note: string): string {
  const parts = [...graphemes.segment(note)].map((g) => g.segment);
  return shownName(parts.length > PIN_NOTE_SHOWN ? `${parts.slice(0, PIN_NOTE_SHOWN - 1).join('')}…` : note);
}
