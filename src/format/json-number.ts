// Owns JSON numbers that a JavaScript number does not hold exactly: an extractor's cursor of 19 digits
// (a message id beyond 2^53), a decimal with more digits than a double keeps, `-0`, `1e400`. A state
// value is any JSON value (docs/format.md §8), and JSON.parse would round such a number (or make it
// Infinity, which JSON.stringify writes as null): a snapshot, its restore and a diff would each see
// another value than the agent's file held. Where state values are read (the default provider's file, a
// bundle's or repository's state entry, a restore journal), every such number becomes a JsonNumber
// holding its text; jsonText writes it back as that text. Shown to a client (cat, diff, MCP, HTTP:
// JSON.stringify), a JsonNumber is its text as a string, as an integer of SQLite beyond 2^53 is.

import { createRequire } from 'node:module';

/**
 * A marker no text written before it can hold (12 random bytes), made only where such a number is:
 * node:crypto is loaded then, not by every command that reads JSON (`list` loads none of it).
 */
function freshMarker(): string {
  const { randomBytes } = createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
  return `nexo-number-${randomBytes(12).toString('hex')}:`;
}

/** A JSON number kept as its text, because no JavaScript number is exactly its value. */
export class JsonNumber {
  constructor(readonly text: string) {}

  /** In JSON meant for reading (not a state file): the text, as a string. */
  toJSON(): string {
    return this.text;
  }
}

/** An integer of at most 15 digits (not `-0`): always a double exactly. */
const SHORT_INTEGER = /^(?:-?[1-9]\d{0,14}|0)$/;
const NUMBER = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/** `text`'s value as sign, significant digits and a power of ten; undefined when not a finite number. */
function decimalOf(text: string): string | undefined {
  const m = NUMBER.exec(text);
  if (!m) return undefined;
  const fraction = m[3] ?? '';
  const all = m[2]! + fraction;
  // (loops, not /0+$/: that regex backtracks quadratically on a long run of zeros before a digit)
  let first = 0;
  while (first < all.length && all.charCodeAt(first) === 0x30) first++;
  if (first === all.length) return `${m[1]}0`;
  let end = all.length;
  while (all.charCodeAt(end - 1) === 0x30) end--;
  const digits = all.slice(first, end);
  const exponent = BigInt(m[4] ?? '0') - BigInt(fraction.length) + BigInt(all.length - end);
  return `${m[1]}${digits}e${exponent}`;
}

/**
 * Whether the JSON number `token` comes back as the same value from JSON.parse and JSON.stringify
 * (`1.0` and `1e2` do: 1 and 100; `9007199254740993`, `0.10000000000000000001`, `-0` and `1e400` do
 * not).
 */
export function keepsItsValue(token: string): boolean {
  if (SHORT_INTEGER.test(token)) return true;
  const parsed = Number(token);
  return Number.isFinite(parsed) && decimalOf(String(parsed)) === decimalOf(token);
}

/**
 * `text` (valid JSON; `at` the [start, end) offsets of its numbers that JSON.parse would change, in
 * pairs) parsed with each of those numbers as a JsonNumber. Each is swapped for a string before
 * JSON.parse, and back after it: a fresh random marker, which no text written before it can hold.
 */
export function parseKeepingNumbers(text: string, at: readonly number[]): unknown {
  const marker = freshMarker();
  const numbers: JsonNumber[] = [];
  let swapped = '';
  let from = 0;
  for (let k = 0; k < at.length; k += 2) {
    swapped += `${text.slice(from, at[k])}"${marker}${numbers.length}"`;
    numbers.push(new JsonNumber(text.slice(at[k], at[k + 1])));
    from = at[k + 1]!;
  }
  swapped += text.slice(from);
  return JSON.parse(swapped, (_key, v: unknown) =>
    typeof v === 'string' && v.startsWith(marker) ? numbers[Number(v.slice(marker.length))] : v,
  );
}

/**
 * `value` as JSON text (JSON.stringify's, with `indent`), every JsonNumber in it written as its number
 * text: what a state file and a bundle's state entry hold.
 */
export function jsonText(value: unknown, indent?: number): string {
  let marker: string | undefined;
  const numbers: string[] = [];
  const text = JSON.stringify(
    value,
    function (this: Record<string, unknown>, key: string, v: unknown) {
      const own = this[key];
      if (!(own instanceof JsonNumber)) return v;
      marker ??= freshMarker();
      numbers.push(own.text);
      return `${marker}${numbers.length - 1}`;
    },
    indent,
  );
  if (marker === undefined) return text;
  return text.replace(new RegExp(`"${marker}(\\d+)"`, 'g'), (_m, k: string) => numbers[Number(k)]!);
}
