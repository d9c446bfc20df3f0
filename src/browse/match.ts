// Owns what `find` looks for in raw bytes (find.ts): the matcher of a text or a regex (a candidate in
// raw bytes, confirmed and counted in text), and what the scan of one database chunk tells: whether it
// holds a candidate, the page size when it starts a database, and the pages (by content) that hold the
// candidates. Pure, so the scan runs on a worker thread as well (scan-worker-main.ts).
// A regex comes from whoever may search (an HTTP reader, an agent over MCP): it is accepted only when
// V8's linear-time engine can run it, and V8 switches to that engine when a match backtracks too much
// (linearRegExp), so no regex can hold the thread (and the daemon's event loop) for long.

import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { InvalidInputError } from '../model/errors.js';

const MAX_QUERY_CHARS = 1000;
/** A text longer than this is prefiltered by its halves (found even when cut by one page boundary). */
const SPLIT_ABOVE = 8;
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
const PAGE_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

/** What a query is: a text or a regex (exactly one). */
export interface Query {
  text?: string | undefined;
  regex?: string | undefined;
}

/** What a query looks for, in text and in raw bytes. */
export interface Matcher {
  /** Matches in a text (0 when none). */
  count(text: string): number;
  /** Index of the first match in a text, or -1. */
  first(text: string): number;
  /**
   * Whether raw bytes may hold a match (a candidate; confirmed on the text): for a long text, either of
   * its halves; for a regex, the regex with its assertions (`^`, `$`, `\b`, `\B`) made empty groups
   * (withoutAssertions), since the bytes around a value in a database page are not the value's start,
   * end or neighbours.
   */
  maybe(bytes: Buffer): boolean;
  /** Matches in raw bytes that are not text (a binary memory file): the whole text, or the regex on them read as UTF-8. */
  countRaw(bytes: Buffer): number;
  /** Byte offsets of the candidate matches in raw bytes; undefined when they cannot be told (a regex). */
  offsets(bytes: Buffer): number[] | undefined;
  needle: { text: string } | { regex: RegExp };
}

/**
 * What raw bytes are searched for a text: the text, or for a text longer than SPLIT_ABOVE bytes its two
 * halves, so that a text cut by one page boundary is still a candidate (its pages hold one half each).
 */
export function textPieces(text: string): Buffer[] {
  const whole = Buffer.from(text, 'utf8');
  const half = Math.ceil(whole.length / 2);
  return whole.length > SPLIT_ABOVE
    ? [whole.subarray(0, half), whole.subarray(whole.length - half)]
    : [whole];
}

/** V8's flags for its linear-time regex engine, set in each thread (isolate) that compiles a regex. */
const LINEAR_FLAGS = [
  '--enable-experimental-regexp-engine', // the `l` flag: compiles only what runs in linear time
  '--enable-experimental-regexp-engine-on-excessive-backtracks', // a backtracking match switches to it
];
let linearFlagsSet = false;

/** V8's linear engine replicates a counted repetition's body: the counts of nested ones, multiplied, at most this. */
export const LINEAR_REPEAT_LIMIT = 16;
/**
 * What one regex's counted repetitions of a single character may count in all once split (below): up
 * to what writing the split by hand already allows in 1000 characters, and the linear engine's time
 * grows with it (docs/decisions.md, stop 43).
 */
export const MAX_SPLIT_REPEAT = 256;

/** A single-character atom's escape: `\d`, `\.`, `\xHH`, `\uHHHH`, `\cX`...; undefined for others. */
function simpleEscape(source: string, i: number): number | undefined {
  const c = source[i + 1];
  if (c === undefined || /[1-9bBk]/.test(c) || (c === '0' && /[0-9]/.test(source[i + 2] ?? '')))
    return undefined;
  if (c === 'x' && /^[0-9a-fA-F]{2}/.test(source.slice(i + 2))) return 4;
  if (c === 'u' && /^[0-9a-fA-F]{4}/.test(source.slice(i + 2))) return 6;
  if (c === 'c') return /[a-zA-Z]/.test(source[i + 2] ?? '') ? 3 : undefined;
  return 2; // a class escape, a control escape or an identity escape: one character
}

/**
 * `source` with each counted repetition of a single character (`[0-9]{20}`, `.{0,40}`, `a{17,}`)
 * counting more than LINEAR_REPEAT_LIMIT split into consecutive ones of at most that count
 * (`[0-9]{16}[0-9]{4}`, `.{0,16}.{0,16}.{0,8}`), which the linear engine runs. It matches the same
 * text at the same places: every part matches one character, so a greedy (lazy) split ends on the
 * longest (shortest) count whose continuation matches, like the original; and it holds no
 * backreference or lookaround (the linear engine would refuse them). `split` is the counts added up.
 */
export function splitRepetitions(source: string): { source: string; split: number } {
  let out = '';
  let split = 0;
  let atom: string | undefined; // the last atom when it is a single character, else undefined
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    const q = c === '{' && atom !== undefined ? /^\{(\d+)(,(\d*))?\}(\??)/.exec(source.slice(i)) : null;
    if (q && atom !== undefined) {
      const min = Number(q[1]);
      const max = q[2] === undefined ? min : q[3] === '' ? Number.POSITIVE_INFINITY : Number(q[3]);
      const count = Math.max(min, Number.isFinite(max) ? max : 0);
      if (count > LINEAR_REPEAT_LIMIT && min <= max) {
        split += count;
        out = out.slice(0, out.length - atom.length);
        for (let n = min; n > 0; n -= LINEAR_REPEAT_LIMIT)
          out += `${atom}{${Math.min(n, LINEAR_REPEAT_LIMIT)}}`;
        const lazy = q[4];
        if (!Number.isFinite(max)) out += `${atom}*${lazy}`;
        else
          for (let n = max - min; n > 0; n -= LINEAR_REPEAT_LIMIT)
            out += `${atom}{0,${Math.min(n, LINEAR_REPEAT_LIMIT)}}${lazy}`;
      } else out += q[0];
      i += q[0].length;
      atom = undefined;
      continue;
    }
    let len = 1;
    let single = true;
    if (c === '\\') {
      const e = simpleEscape(source, i);
      single = e !== undefined;
      // a backreference or an octal escape (`\\12`) takes all its digits
      len = e ?? 1 + (/^[0-9a-zA-Z][0-9]*/.exec(source.slice(i + 1))?.[0].length ?? 1);
    } else if (c === '[') {
      let j = i + 1;
      if (source[j] === '^') j++;
      while (j < source.length && source[j] !== ']') j += source[j] === '\\' ? 2 : 1;
      len = j + 1 - i;
    } else if ('()|^$*+?'.includes(c)) single = false;
    const piece = source.slice(i, i + len);
    out += piece;
    atom = single ? piece : undefined;
    i += len;
  }
  return { source: out, split };
}

/** Why V8's linear engine refuses `source` (split by splitRepetitions), for the refusal. */
function notLinearReason(source: string): string {
  if (/\(\?<?[=!]/.test(source)) return 'lookahead and lookbehind are not supported';
  if (/\\([1-9]|k<)/.test(source)) return 'backreferences (\\1, \\k<name>) are not supported';
  return (
    `a counted repetition of a group, or nested ones, may count at most ${LINEAR_REPEAT_LIMIT} (nested counts ` +
    `multiply: the linear engine copies a body that many times); write (?:ab){16}(?:ab) for (?:ab){17}`
  );
}

/**
 * `source` compiled (and with the `g` flag), refused unless V8's linear-time engine can run it
 * (no backreferences, no lookahead; Node 20 has no lookbehind there either; a counted repetition of a
 * single character above 16 split first: splitRepetitions). V8 runs such a regex with its
 * backtracking engine and, once a match has backtracked more than its limit (50,000 by default), again
 * with the linear one: `(\w+\s?)+$` against 40 letters and a `!` takes ~2 ms instead of minutes.
 */
export function linearRegExp(source: string): { re: RegExp; global: RegExp } {
  if (!linearFlagsSet) {
    const v8 = createRequire(import.meta.url)('node:v8') as typeof import('node:v8');
    for (const f of LINEAR_FLAGS) v8.setFlagsFromString(f);
    linearFlagsSet = true;
  }
  try {
    new RegExp(source);
  } catch (err) {
    throw new InvalidInputError(`the regex does not compile: ${(err as Error).message}`);
  }
  const split = splitRepetitions(source);
  if (split.split > MAX_SPLIT_REPEAT)
    throw new InvalidInputError(
      `the regex's counted repetitions of one character add up to ${split.split}, above ${MAX_SPLIT_REPEAT}: the linear engine's time grows with them`,
    );
  try {
    new RegExp(split.source, 'l');
  } catch {
    throw new InvalidInputError(
      `the regex cannot run in linear time: ${notLinearReason(split.source)} (a search must not be able to stall the process)`,
    );
  }
  return { re: new RegExp(split.source), global: new RegExp(split.source, 'g') };
}

/**
 * `re` with its assertions `^`, `$`, `\b` and `\B` (outside character classes) each replaced by an
 * empty group (KEEP_APART): it matches wherever `re` matches, and in raw bytes where a value's start,
 * end or neighbours are not those of the bytes (a row's value in a database page sits between record
 * bytes), since an empty group holds wherever the assertion did; `re` itself when it has none.
 * (Lookarounds never get here: linearRegExp refuses them.)
 */
/**
 * What stands where an assertion was: an empty group, which matches where the assertion's place is and
 * keeps its neighbours apart (`\x4\B1` without it would read `\x41`, an `A`; with it, `\x4(?:)1` still
 * matches `x41`), and may carry the assertion's quantifier.
 */
const KEEP_APART = '(?:)';

export function withoutAssertions(re: RegExp): RegExp {
  const source = re.source;
  let out = '';
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      const e = source[i + 1] ?? '';
      i++;
      if (!inClass && (e === 'b' || e === 'B')) {
        out += KEEP_APART;
        continue;
      }
      out += c + e;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    if (c === '[') {
      // (in JavaScript a `]` right after `[` or `[^` ends the class: `[]` matches nothing, `[^]` anything)
      inClass = true;
      out += c;
      if (source[i + 1] === '^') {
        out += '^';
        i++;
      }
      continue;
    }
    if (c === '^' || c === '$') {
      out += KEEP_APART;
      continue;
    }
    out += c;
  }
  if (out === source) return re;
  try {
    return new RegExp(out, re.flags);
  } catch {
    return /(?:)/; // cannot be told: every chunk is a candidate, each confirmed on the text
  }
}

export function matcherOf(req: Query): Matcher {
  const { text, regex } = req;
  if ((text === undefined) === (regex === undefined))
    throw new InvalidInputError('find needs exactly one of a text and a regex');
  const q = (text ?? regex)!;
  if (q.length === 0) throw new InvalidInputError('find needs a non-empty text or regex');
  if (q.length > MAX_QUERY_CHARS)
    throw new InvalidInputError(`the query is longer than ${MAX_QUERY_CHARS} characters`);
  if (text !== undefined) {
    const pieces = textPieces(text);
    const whole = Buffer.from(text, 'utf8');
    return {
      needle: { text },
      count(t) {
        let n = 0;
        for (let i = t.indexOf(text); i >= 0; i = t.indexOf(text, i + text.length)) n++;
        return n;
      },
      first: (t) => t.indexOf(text),
      maybe: (b) => pieces.some((p) => b.indexOf(p) >= 0),
      countRaw(b) {
        let n = 0;
        for (let i = b.indexOf(whole); i >= 0; i = b.indexOf(whole, i + whole.length)) n++;
        return n;
      },
      offsets(b) {
        const out: number[] = [];
        for (const p of pieces)
          for (let i = b.indexOf(p); i >= 0; i = b.indexOf(p, i + 1)) out.push(i, i + p.length - 1);
        return out;
      },
    };
  }
  const { re, global } = linearRegExp(regex!);
  const count = (t: string): number => {
    let n = 0;
    global.lastIndex = 0;
    for (let m = global.exec(t); m; m = global.exec(t)) {
      n++;
      if (m[0].length === 0) global.lastIndex++;
    }
    return n;
  };
  const candidate = withoutAssertions(re);
  return {
    needle: { regex: re },
    count,
    first: (t) => t.search(re),
    maybe: (b) => candidate.test(b.toString('utf8')),
    countRaw: (b) => count(b.toString('utf8')),
    offsets: () => undefined,
  };
}

/**
 * The pages of a candidate chunk that hold a candidate match, by content (SHA-256 of the page), for
 * every possible page size (the chunk starts on a page boundary; the database's page size is known
 * only from its header, read later). Undefined when the match offsets cannot be told (a regex).
 */
export function candidatePages(m: Matcher, b: Buffer): Map<number, string[]> | undefined {
  const offsets = m.offsets(b);
  if (!offsets) return undefined;
  const out = new Map<number, string[]>();
  for (const ps of PAGE_SIZES) {
    const starts = [...new Set(offsets.map((o) => o - (o % ps)))].sort((x, y) => x - y);
    out.set(
      ps,
      starts.map((st) =>
        createHash('sha256')
          .update(b.subarray(st, st + ps))
          .digest('hex'),
      ),
    );
  }
  return out;
}

/** What scanning one database chunk tells. */
export interface ChunkScan {
  /** Whether the chunk holds a candidate match. */
  hit: boolean;
  /** The database's page size, when the chunk starts a database (its header). */
  pageSize?: number;
  /** The candidate pages by page size (hits only; undefined when they cannot be told: a regex). */
  pages?: Map<number, string[]> | undefined;
  /**
   * The chunk starts a database whose text is UTF-16 (its header's text encoding 2 or 3): the query's
   * UTF-8 bytes cannot be looked for in its pages, so the chunk is a hit and the database is searched
   * whole (find.ts).
   */
  utf16?: true;
}

/** What the database header these bytes start with says (page size, UTF-16 text), if they start one. */
export function databaseHeader(b: Uint8Array): { pageSize: number; utf16: boolean } | undefined {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (buf.length < 100 || !buf.subarray(0, 16).equals(SQLITE_MAGIC)) return undefined;
  const ps = buf.readUInt16BE(16);
  const encoding = buf.readUInt32BE(56);
  return { pageSize: ps === 1 ? 65536 : ps, utf16: encoding === 2 || encoding === 3 };
}

export function scanChunk(m: Matcher, b: Buffer): ChunkScan {
  const header = databaseHeader(b);
  if (header?.utf16) return { hit: true, pageSize: header.pageSize, pages: undefined, utf16: true };
  const hit = m.maybe(b);
  const out: ChunkScan = { hit };
  if (header) out.pageSize = header.pageSize;
  if (hit) out.pages = candidatePages(m, b);
  return out;
}
