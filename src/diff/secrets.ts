// Owns how a diff treats secrets: which differences are only redactions (one side holds exactly the
// redacted form of the other side's value, placeholders `[REDACTED:<rule>]` where the other has the
// secret), and the form in which values are shown: passed through the redaction rules unless the
// caller asked to see them as stored. Pure.

import { JsonNumber } from '../format/json-number.js';
import { canonicalJson } from '../format/manifest.js';
import { asText, REDACTED_MARK, type RedactionPolicy, redactText } from '../policy/redaction/scan.js';

/** Which side holds the placeholders when the only difference is redaction. */
export type PlaceholderSide = 'a' | 'b';

/**
 * A JSON value through the redaction rules as JSON text, keys included, as a redacted export redacts a
 * state file (policy/redaction/redact.ts): a rule that needs a key beside its value (`"password":
 * "…"`) sees them together, and a secret used as a key is redacted too. Should the redacted text no
 * longer be JSON, every key and every string through the rules on its own.
 */
export function redactJson(policy: RedactionPolicy, v: unknown): unknown {
  if (v === undefined) return v;
  const r = redactText(policy, JSON.stringify(v, null, 2));
  if (r.matches === 0) return v;
  try {
    return JSON.parse(r.text);
  } catch {
    return redactEachString(policy, v);
  }
}

/** Every key and every string of a JSON value through the redaction rules, each on its own. */
function redactEachString(policy: RedactionPolicy, v: unknown): unknown {
  if (typeof v === 'string') return redactText(policy, v).text;
  if (v instanceof JsonNumber) return v;
  if (Array.isArray(v)) return v.map((x) => redactEachString(policy, x));
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [redactText(policy, k).text, redactEachString(policy, x)]),
    );
  return v;
}

/** 'a' or 'b' when `a` and `b` differ and one is exactly the other redacted; otherwise undefined. */
export function placeholdersIn(policy: RedactionPolicy, a: string, b: string): PlaceholderSide | undefined {
  if (a === b) return undefined;
  if (a.includes(REDACTED_MARK) && redactText(policy, b).text === a) return 'a';
  if (b.includes(REDACTED_MARK) && redactText(policy, a).text === b) return 'b';
  return undefined;
}

/** placeholdersIn for file contents (binary contents are never a redaction). */
export function placeholdersInBytes(
  policy: RedactionPolicy,
  a: Buffer,
  b: Buffer,
): PlaceholderSide | undefined {
  const ta = asText(a);
  const tb = ta === undefined ? undefined : asText(b);
  return ta === undefined || tb === undefined ? undefined : placeholdersIn(policy, ta, tb);
}

/** placeholdersIn for JSON values (state): compared as canonical JSON. */
export function placeholdersInJson(
  policy: RedactionPolicy,
  a: unknown,
  b: unknown,
): PlaceholderSide | undefined {
  const ca = canonicalJson(a ?? null);
  const cb = canonicalJson(b ?? null);
  if (ca === cb) return undefined;
  if (ca.includes(REDACTED_MARK) && canonicalJson(redactJson(policy, b ?? null)) === ca) return 'a';
  if (cb.includes(REDACTED_MARK) && canonicalJson(redactJson(policy, a ?? null)) === cb) return 'b';
  return undefined;
}

/** How values are shown: redacted with `policy`, or as stored when it is undefined (--show-secrets). */
export interface Shown {
  policy: RedactionPolicy | undefined;
}

export function showText(s: Shown, text: string): string {
  return s.policy ? redactText(s.policy, text).text : text;
}

/**
 * The bytes of a binary value (a NUL, or not UTF-8) as shown: redacted, the rules run over them read as
 * Latin-1 (one character per byte), so a secret is replaced and every other byte stays as stored; as
 * stored with --show-secrets. What cat shows of such a file, and what find searches (stop 62 review:
 * find counted matches in the raw bytes, so a redacted secret could be guessed a character at a time).
 */
export function showBinary(s: Shown, bytes: Buffer): Buffer {
  return s.policy ? Buffer.from(redactText(s.policy, bytes.toString('latin1')).text, 'latin1') : bytes;
}

export function showJson(s: Shown, v: unknown): unknown {
  return s.policy ? redactJson(s.policy, v) : v;
}
