// Owns identifier rules: agent ids and tenants (validated, the message names the broken rule), snapshot
// ids (UUID v7 generated, any UUID spelling parsed to the lowercase hyphenated form), labels. Pure.

import { randomBytes } from '../util/random.js';
import { InvalidInputError } from './errors.js';

export const DEFAULT_TENANT = 'default';
const MAX_ID_BYTES = 64;

/**
 * Validates an agent id or tenant with the original's rules, in the original's order:
 * length 1..64 bytes → no NUL → not starting/ending with `_` or `-` → charset `[a-z0-9_-]`.
 */
export function validateId(kind: 'agent_id' | 'tenant', value: string): string {
  if (typeof value !== 'string') throw new InvalidInputError(`${kind} must be a string`);
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes < 1 || bytes > MAX_ID_BYTES) {
    throw new InvalidInputError(
      `invalid ${kind} ${JSON.stringify(value)}: length must be 1..${MAX_ID_BYTES} bytes (got ${bytes})`,
    );
  }
  if (value.includes('\0')) throw new InvalidInputError(`invalid ${kind}: must not contain NUL`);
  const first = value[0];
  const last = value[value.length - 1];
  if (first === '_' || first === '-' || last === '_' || last === '-') {
    throw new InvalidInputError(
      `invalid ${kind} ${JSON.stringify(value)}: must not start or end with '_' or '-'`,
    );
  }
  if (!/^[a-z0-9_-]+$/.test(value)) {
    throw new InvalidInputError(
      `invalid ${kind} ${JSON.stringify(value)}: only [a-z0-9_-] allowed (lowercase letters, digits, '_', '-')`,
    );
  }
  return value;
}

export const validateAgentId = (v: string): string => validateId('agent_id', v);
/** Whether `v` is a valid agent id or tenant (the rules of validateId), without throwing. */
export function isValidId(v: unknown): boolean {
  return (
    typeof v === 'string' &&
    v.length > 0 &&
    Buffer.byteLength(v, 'utf8') <= MAX_ID_BYTES &&
    /^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$/.test(v)
  );
}
export const validateTenant = (v: string): string => validateId('tenant', v);

const HEX32 = /^[0-9a-f]{32}$/;

/** The snapshot reference that names an agent's newest snapshot (restic's word), wherever an id is taken. */
export const LATEST = 'latest';

/** Parses any UUID spelling the original accepted (hyphenated, simple, braced, urn:uuid:, any case). */
export function parseSnapshotId(input: string): string | undefined {
  let s = input.trim().toLowerCase();
  if (s.startsWith('urn:uuid:')) s = s.slice(9);
  if (s.startsWith('{') && s.endsWith('}')) s = s.slice(1, -1);
  let hex: string;
  if (s.length === 36) {
    if (s[8] !== '-' || s[13] !== '-' || s[18] !== '-' || s[23] !== '-') return undefined;
    hex = s.replaceAll('-', '');
  } else {
    hex = s;
  }
  if (!HEX32.test(hex)) return undefined;
  return formatUuid(hex);
}

/**
 * A snapshot id prefix, by the one rule of every store (the bundle store, the repository, `restore
 * --from`): trimmed, any case, hex digits and hyphens, of which only the digits count — a hyphen may be
 * written where the id has one or left out (`0190a1b2-c3d4` and `0190a1b2c3d4` name the same
 * snapshots), and at least 4 digits (at most 32). Returns the digits in lowercase, or undefined when
 * `input` is not such a prefix.
 */
export function parseSnapshotPrefix(input: string): string | undefined {
  const s = input.trim().toLowerCase();
  if (!/^[0-9a-f-]{4,36}$/.test(s)) return undefined;
  const digits = s.replaceAll('-', '');
  return digits.length >= 4 && digits.length <= 32 ? digits : undefined;
}

/** Whether snapshot `id` (canonical) starts with `digits`, a prefix as parseSnapshotPrefix returns it. */
export const idHasPrefix = (id: string, digits: string): boolean => id.replaceAll('-', '').startsWith(digits);

export function isCanonicalSnapshotId(s: string): boolean {
  return s.length === 36 && parseSnapshotId(s) === s;
}

function formatUuid(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

let lastMs = 0;
let lastSeq = 0;

/** A new UUID v7 (RFC 9562): 48-bit ms timestamp, then random bits; monotonic within one process. */
export function newSnapshotId(now = Date.now()): string {
  const rand = randomBytes(10);
  let ms = now;
  if (ms <= lastMs) {
    ms = lastMs;
    lastSeq = (lastSeq + 1) & 0xfff;
    if (lastSeq === 0) ms = ++lastMs;
  } else {
    lastSeq = ((rand[0]! << 8) | rand[1]!) & 0x7ff; // leave room to count up within one ms
  }
  lastMs = ms;
  const b = Buffer.alloc(16);
  b.writeUIntBE(ms, 0, 6);
  b[6] = 0x70 | ((lastSeq >> 8) & 0x0f);
  b[7] = lastSeq & 0xff;
  rand.copy(b, 8, 2, 10);
  b[8] = (b[8]! & 0x3f) | 0x80;
  return formatUuid(b.toString('hex'));
}

const CANONICAL_UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * The id in `name` when `name` is exactly `prefix` followed by a UUID v7 as newSnapshotId spells it
 * (lowercase, hyphenated): how the directories a restore makes are told from the files of a memdir
 * that merely begin the same way (a memory file `.restore-notes.md`).
 */
export function idAfterPrefix(name: string, prefix: string): string | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const id = name.slice(prefix.length);
  return CANONICAL_UUID_V7.test(id) ? id : undefined;
}

/** The time (ms since the epoch) of a UUID v7 in any spelling parseSnapshotId takes; undefined for other ids. */
export function uuidV7Time(id: string): number | undefined {
  const u = parseSnapshotId(id);
  if (u === undefined || u[14] !== '7') return undefined;
  return Number.parseInt(u.slice(0, 8) + u.slice(9, 13), 16);
}

/**
 * `value` when it is a string, else INVALID_INPUT naming the argument: what a library caller passes may
 * be anything, and a number or an object where text belongs failed with an untyped TypeError (or
 * another code) deep inside.
 */
export function textArgument(name: string, value: unknown): string {
  if (typeof value !== 'string') throw new InvalidInputError(`${name} must be a string, got ${typeof value}`);
  return value;
}

export const MAX_LABEL_CHARS = 200;

/**
 * Characters a label or created_by must not hold, as they are shown to operators (list, the console,
 * logs): C0 and C1 controls and DEL, and the bidirectional controls (U+061C, U+200E, U+200F,
 * U+202A–U+202E, U+2066–U+2069) and the line and paragraph separators (U+2028, U+2029), with which a
 * label could be shown as something else (a right-to-left override reverses what follows it).
 */
const UNSHOWN = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/;

/**
 * What is wrong with a label, or undefined when it is a valid one: at most 200 characters, no control
 * characters (UNSHOWN: they end up in file listings and logs), no lone surrogates. The config's
 * `schedule[].label` is checked with it when the config is loaded (config/config.ts).
 */
export function labelProblem(label: string): string | undefined {
  if ([...label].length > MAX_LABEL_CHARS) return `at most ${MAX_LABEL_CHARS} characters`;
  const bad = UNSHOWN.exec(label);
  if (bad) {
    const cp = `U+${bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
    return `must not contain control characters (${cp}; C0/C1 controls, bidirectional controls and line separators are refused)`;
  }
  // A lone surrogate has no UTF-8 form: the manifest could not carry it (docs/format.md §4.1).
  if (/\p{Surrogate}/u.test(label)) return 'not valid Unicode text';
  return undefined;
}

/** Labels: labelProblem's rules; INVALID_INPUT ("invalid label: …") naming the rule broken. */
export function validateLabel(label: string | undefined): string | undefined {
  return shownText('label', label);
}

/**
 * A pin's note (`pin --note`): shown by `list` as a label is, so held to the label's rules (stop 44);
 * notes stored before are shown escaped.
 */
export function validatePinNote(note: string | undefined): string | undefined {
  return shownText('note', note);
}

function shownText(kind: 'label' | 'note', text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  // a library caller's value may be anything: a number or an object was sealed into the manifest
  if (typeof text !== 'string') throw new InvalidInputError(`invalid ${kind}: a string, got ${typeof text}`);
  const problem = labelProblem(text);
  if (problem !== undefined) throw new InvalidInputError(`invalid ${kind}: ${problem}`);
  return text;
}

/** created_by: free text in the original; here 1..64 printable characters. */
export function validateCreatedBy(createdBy: string): string {
  if (
    typeof createdBy !== 'string' ||
    createdBy.length < 1 ||
    createdBy.length > 64 ||
    UNSHOWN.test(createdBy) ||
    /\p{Surrogate}/u.test(createdBy)
  ) {
    throw new InvalidInputError('invalid created_by: 1..64 printable characters');
  }
  return createdBy;
}
