// Owns reading JSON that comes out of a bundle (manifest.json, state values): one iterative pass over
// the text that enforces the rules docs/format.md §4.2 states — valid UTF-8 without a BOM, RFC 8259
// grammar, nesting depth, no duplicate member names and, for the manifest, integer numbers only and no
// unpaired surrogate escapes — before JSON.parse or anything recursive (schema checks, canonical JSON,
// JSON.stringify) sees the value. Pure: callers turn the plain Error into their typed one (stateValueOf
// does it for a state value).

import { BundleDamagedError } from '../model/errors.js';
import { keepsItsValue, parseKeepingNumbers } from './json-number.js';

/** Deepest nesting of arrays and objects accepted (the document's top-level value is depth 1). */
export const MAX_JSON_DEPTH = 64;

export interface StrictJsonOptions {
  /**
   * The manifest's extra rules, which make its canonical form the same in every language: numbers are
   * integers within ±(2^53 − 1) without fraction, exponent or `-0`; no unpaired surrogate escapes.
   */
  manifest?: boolean;
  maxDepth?: number;
  /** Only the grammar (JSON.parse's rules): duplicate member names pass. */
  grammarOnly?: boolean;
  /**
   * Numbers that JSON.parse would round (beyond 2^53, more digits than a double keeps, `-0`, `1e400`)
   * come out as JsonNumber, holding their text (json-number.ts): a state value's.
   */
  exactNumbers?: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Parses `bytes` as strict JSON (see the module comment); throws an Error naming the first problem. */
export function parseStrictJson(bytes: Uint8Array, opts: StrictJsonOptions = {}): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new Error('not valid UTF-8');
  }
  const inexact: number[] | undefined = opts.exactNumbers ? [] : undefined;
  scanJson(text, opts, undefined, inexact);
  return inexact?.length ? parseKeepingNumbers(text, inexact) : JSON.parse(text);
}

/**
 * `value`, the JSON.parse of `text`, with every number of `text` JSON.parse changed as a JsonNumber
 * (json-number.ts): `value` itself when there is none, as almost always. For JSON read from the
 * host's own files (a state file, a restore journal), whose grammar JSON.parse has checked.
 */
export function keepingNumbers(text: string, value: unknown): unknown {
  const inexact: number[] = [];
  try {
    // (nested deeper than a state value may be, the value is refused where it is used; JSON.parse's
    // reviver, which keeps the numbers, would recurse once per level)
    scanJson(text, { grammarOnly: true, maxDepth: 2 * MAX_JSON_DEPTH }, undefined, inexact);
  } catch {
    return value;
  }
  return inexact.length > 0 ? parseKeepingNumbers(text, inexact) : value;
}

/**
 * A state value's bytes out of a bundle or a repository snapshot (`path`: where it lies in the bundle),
 * as restore and diff read them: strict JSON, else BundleDamagedError (a repository's verify does not
 * parse state values: their blob's hash is right whatever its bytes).
 */
export function stateValueOf(bytes: Uint8Array, path: string): unknown {
  try {
    return parseStrictJson(bytes, { exactNumbers: true });
  } catch (err) {
    throw new BundleDamagedError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * parseStrictJson, and where each element of the top-level object's array member `member` lies in the
 * text: `spans` holds [start, end) offsets in pairs, in order (empty when there is no such array).
 * Equal element texts parse to equal values, which lets a reader of many documents check each once.
 */
export function parseStrictJsonSpans(
  bytes: Uint8Array,
  opts: StrictJsonOptions,
  member: string,
): { value: unknown; text: string; spans: number[] } {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new Error('not valid UTF-8');
  }
  const spans: number[] = [];
  scanJson(text, opts, { member, out: spans });
  return { value: JSON.parse(text), text, spans };
}

/**
 * Where text that JSON.parse refused goes wrong, without quoting it (JSON.parse's own message quotes the
 * text's first characters): the scanner's finding, e.g. `unexpected character at offset 0`.
 */
export function jsonSyntaxProblem(text: string): string {
  try {
    scanJson(text, { maxDepth: Number.MAX_SAFE_INTEGER, grammarOnly: true });
  } catch (err) {
    return (err as Error).message;
  }
  return 'not accepted by JSON.parse';
}

/**
 * Where a value (not text: what a state provider returned, say) nests arrays and objects deeper than
 * `maxDepth`, found by an iterative walk before anything recursive (JSON.stringify) sees it; undefined
 * when it does not. A value that holds itself is nested without end and so is refused the same way.
 */
export function valueDepthProblem(value: unknown, maxDepth = MAX_JSON_DEPTH): string | undefined {
  const pending: Array<[unknown, number]> = [[value, 1]];
  while (pending.length > 0) {
    const [v, depth] = pending.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > maxDepth) return `nesting deeper than ${maxDepth} levels`;
    const children = Array.isArray(v) ? v : Object.values(v);
    for (const child of children)
      if (child !== null && typeof child === 'object') pending.push([child, depth + 1]);
  }
  return undefined;
}

/** What the scanner expects next. */
const Expect = { Value: 0, ValueOrEnd: 1, Key: 2, KeyOrEnd: 3, After: 4 } as const;
type Expect = (typeof Expect)[keyof typeof Expect];

/** A run of string characters that need no attention (sticky: matches only at lastIndex). */
const PLAIN = /[^"\\\u0000-\u001f]+/y;

const isWs = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
/** A run of whitespace (sticky): a manifest is indented, its runs skipped by the regex engine, not a loop. */
const WS = /[ \t\n\r]+/y;
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isHex = (c: number): boolean => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);

/**
 * Checks `text` against the rules without building a value; throws at the first violation. With
 * `spans`, records the offsets of the elements of the top-level object's array member `spans.member`.
 */
export function scanJson(
  text: string,
  opts: StrictJsonOptions = {},
  spans?: { member: string; out: number[] },
  /** Receives the [start, end) offsets of the numbers JSON.parse would change (json-number.ts). */
  inexact?: number[],
): void {
  const maxDepth = opts.maxDepth ?? MAX_JSON_DEPTH;
  // One frame per open container: the member names seen so far (objects) or undefined (arrays).
  const stack: Array<Set<string> | undefined> = [];
  let i = 0;
  // spans: the top-level member being read, whether the open array at depth 2 is the one asked for,
  // and where its current element started
  let rootKey: string | undefined;
  let inTarget = false;
  let elementAt = 0;
  /** A value just ended at `i` (the stack as it is now): an element of the target array? */
  const ended = (): void => {
    if (inTarget && stack.length === 2) spans!.out.push(elementAt, i);
  };
  /** A container just closed (popped). */
  const closed = (): void => {
    if (stack.length === 1) inTarget = false;
    ended();
  };
  let expect: Expect = Expect.Value;
  const n = text.length;
  const fail = (what: string): never => {
    throw new Error(`${what} at offset ${i}`);
  };

  /** Scans the string starting at the quote at `i`; returns its raw text including quotes. */
  const scanString = (): string => {
    const start = i;
    i++;
    let escaped = false;
    for (;;) {
      PLAIN.lastIndex = i;
      if (PLAIN.test(text)) i = PLAIN.lastIndex;
      if (i >= n) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) fail('unescaped control character in a string');
      if (c !== 0x5c) {
        i++;
        continue;
      }
      escaped = true;
      const e = text.charCodeAt(i + 1);
      if (e === 0x75) {
        const unit = hex4(i + 2);
        i += 6;
        if (!opts.manifest) continue;
        if (unit >= 0xdc00 && unit <= 0xdfff) fail('unpaired low surrogate escape');
        if (unit >= 0xd800 && unit <= 0xdbff) {
          const low = text.charCodeAt(i) === 0x5c && text.charCodeAt(i + 1) === 0x75 ? hex4(i + 2) : -1;
          if (low < 0xdc00 || low > 0xdfff) fail('unpaired high surrogate escape');
          i += 6;
        }
      } else if (
        e === 0x22 ||
        e === 0x5c ||
        e === 0x2f ||
        e === 0x62 ||
        e === 0x66 ||
        e === 0x6e ||
        e === 0x72 ||
        e === 0x74
      ) {
        i += 2;
      } else {
        fail('invalid escape in a string');
      }
    }
    i++;
    const raw = text.slice(start, i);
    return escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
  };

  const hex4 = (at: number): number => {
    for (let k = at; k < at + 4; k++) if (!isHex(text.charCodeAt(k))) fail('invalid \\u escape');
    return Number.parseInt(text.slice(at, at + 4), 16);
  };

  const scanNumber = (): void => {
    const start = i;
    if (text.charCodeAt(i) === 0x2d) i++;
    const first = text.charCodeAt(i);
    if (!isDigit(first)) fail('invalid number');
    i++;
    if (first !== 0x30) while (isDigit(text.charCodeAt(i))) i++;
    const intEnd = i;
    let fraction = false;
    if (text.charCodeAt(i) === 0x2e) {
      fraction = true;
      i++;
      if (!isDigit(text.charCodeAt(i))) fail('invalid number');
      while (isDigit(text.charCodeAt(i))) i++;
    }
    const e = text.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      fraction = true;
      i++;
      const s = text.charCodeAt(i);
      if (s === 0x2b || s === 0x2d) i++;
      if (!isDigit(text.charCodeAt(i))) fail('invalid number');
      while (isDigit(text.charCodeAt(i))) i++;
    }
    if (inexact && !keepsItsValue(text.slice(start, i))) inexact.push(start, i);
    if (!opts.manifest) return;
    if (fraction) {
      i = start;
      fail('a number that is not an integer');
    }
    const digits = text.slice(start, intEnd);
    const v = Number(digits);
    if (digits === '-0' || !Number.isSafeInteger(v)) {
      i = start;
      fail(digits === '-0' ? 'the number -0' : 'an integer beyond ±(2^53 − 1)');
    }
  };

  const skipWs = (): void => {
    if (!isWs(text.charCodeAt(i))) return;
    WS.lastIndex = i;
    WS.test(text);
    i = WS.lastIndex;
  };

  const literal = (word: string): void => {
    if (text.startsWith(word, i)) i += word.length;
    else fail('unexpected character');
  };

  for (;;) {
    skipWs();
    if (i >= n) {
      if (expect === Expect.After && stack.length === 0) return;
      fail('unexpected end of JSON');
    }
    const c = text.charCodeAt(i);
    if (expect === Expect.After) {
      if (stack.length === 0) fail('unexpected data after the JSON value');
      const keys = stack[stack.length - 1];
      if (c === 0x2c) {
        i++;
        expect = keys ? Expect.Key : Expect.Value;
      } else if (c === (keys ? 0x7d : 0x5d)) {
        i++;
        stack.pop();
        closed();
      } else {
        fail(keys ? "expected ',' or '}'" : "expected ',' or ']'");
      }
      continue;
    }
    if (expect === Expect.KeyOrEnd || expect === Expect.ValueOrEnd) {
      if (c === (expect === Expect.KeyOrEnd ? 0x7d : 0x5d)) {
        i++;
        stack.pop();
        closed();
        expect = Expect.After;
        continue;
      }
      expect = expect === Expect.KeyOrEnd ? Expect.Key : Expect.Value;
    }
    if (expect === Expect.Key) {
      if (c !== 0x22) fail('expected a member name');
      const keyAt = i;
      const key = scanString();
      const keys = stack[stack.length - 1]!;
      if (keys.has(key) && !opts.grammarOnly) {
        i = keyAt;
        fail(`duplicate member name ${JSON.stringify(key)}`);
      }
      keys.add(key);
      if (stack.length === 1) rootKey = key;
      skipWs();
      if (text.charCodeAt(i) !== 0x3a) fail("expected ':'");
      i++;
      expect = Expect.Value;
      continue;
    }
    // Expect.Value
    if (inTarget && stack.length === 2) elementAt = i;
    if (c === 0x7b || c === 0x5b) {
      if (stack.length >= maxDepth) fail(`nesting deeper than ${maxDepth} levels`);
      if (spans && stack.length === 1 && c === 0x5b && rootKey === spans.member && stack[0] !== undefined)
        inTarget = true;
      stack.push(c === 0x7b ? new Set() : undefined);
      i++;
      expect = c === 0x7b ? Expect.KeyOrEnd : Expect.ValueOrEnd;
      continue;
    }
    if (c === 0x22) scanString();
    else if (c === 0x2d || isDigit(c)) scanNumber();
    else if (c === 0x74) literal('true');
    else if (c === 0x66) literal('false');
    else if (c === 0x6e) literal('null');
    else fail('unexpected character');
    ended();
    expect = Expect.After;
  }
}
