// Owns the repository index (docs/repository.md §5): the in-memory map from blob id to where it is
// stored (pack, offset, lengths; a compact BlobTable, blob-table.ts), and the index files it is read
// from and written to.

import { BundleDamagedError, SchemaTooNewError } from '../model/errors.js';
import { BlobTable } from './blob-table.js';
import { type BlobKind, KIND_DATA, KIND_TREE, MAX_BLOB, MAX_STORED, type PackEntry } from './pack.js';

export interface BlobLocation {
  pack: string;
  kind: BlobKind;
  flags: number;
  offset: number;
  stored: number;
  raw: number;
}

export interface PackRecord {
  id: string;
  /** Hex salt of the pack key (encrypted repositories). */
  salt?: string;
  entries: PackEntry[];
}

const HEX64 = /^[0-9a-f]{64}$/;

/** The union of the index files that were loaded, plus what this process wrote since. */
export class MasterIndex {
  private blobTable = new BlobTable();
  /** Pack names by number (the table's pack column). */
  readonly packNames: string[] = [];
  private readonly packNumbers = new Map<string, number>();
  readonly packs = new Map<string, { salt?: string; blobs: number; bytes: number }>();
  /** Index files merged into this one. */
  readonly files = new Set<string>();

  /** Every blob: id and location (its pack as a number into packNames). */
  get table(): BlobTable {
    return this.blobTable;
  }

  get blobCount(): number {
    return this.table.size;
  }

  has(id: string | Buffer): boolean {
    return this.table.find(id) >= 0;
  }

  get(id: string): BlobLocation | undefined {
    const i = this.table.find(id);
    return i < 0 ? undefined : this.locationAt(i);
  }

  /** The location of the blob numbered `i` in the table. */
  locationAt(i: number): BlobLocation {
    const t = this.table;
    return {
      pack: this.packNames[t.packOf(i)]!,
      kind: t.kindOf(i) as BlobKind,
      flags: t.flagsOf(i),
      offset: t.offsetOf(i),
      stored: t.storedOf(i),
      raw: t.rawOf(i),
    };
  }

  /** The number of pack `name` in the table's pack column (a new one the first time). */
  packNumber(name: string): number {
    let n = this.packNumbers.get(name);
    if (n === undefined) {
      n = this.packNames.length;
      this.packNames.push(name);
      this.packNumbers.set(name, n);
    }
    return n;
  }

  /** Room for `n` more blobs without growing on the way (BlobTable.reserve). */
  reserve(n: number): void {
    this.table.reserve(this.table.size + n);
  }

  /**
   * Whether `table` can become this index as it is (adopt): the index has no blob and no pack yet, so
   * the packs of the table's pack column can be numbered as the table numbers them.
   */
  get empty(): boolean {
    return this.table.size === 0 && this.packNames.length === 0;
  }

  /**
   * Takes `table` as the whole index instead of copying it blob by blob (a first snapshot's blobs
   * into an empty index: the copy was as large again as the table, at the end of the snapshot). The
   * table's pack number `i` is `packs[i]`. Only while the index is empty; the table is the index's
   * from now on (its owner adds nothing to it afterwards).
   */
  adopt(
    table: BlobTable,
    packs: readonly { id: string; salt?: string; blobs: number; bytes: number }[],
  ): void {
    if (!this.empty) throw new Error('MasterIndex.adopt: the index is not empty');
    for (const [i, p] of packs.entries()) {
      if (this.packNumber(p.id) !== i) throw new Error('MasterIndex.adopt: a pack is listed twice');
      this.notePack(p.id, p.salt, p.blobs, p.bytes);
    }
    this.blobTable = table;
  }

  /** Records a pack (its salt, blob count and bytes); its blobs are added with addBlob. */
  notePack(id: string, salt: string | undefined, blobs: number, bytes: number): void {
    this.packs.set(id, { ...(salt ? { salt } : {}), blobs, bytes });
  }

  /** Adds one blob of pack number `pack` (the first location of an id is kept). */
  addBlob(id: string | Buffer, pack: number, e: Omit<PackEntry, 'id'>): void {
    this.table.add(id, {
      pack,
      kind: e.kind,
      flags: e.flags,
      offset: e.offset,
      stored: e.stored,
      raw: e.raw,
    });
  }

  addPack(p: PackRecord): void {
    let bytes = 0;
    const n = this.packNumber(p.id);
    for (const e of p.entries) {
      bytes += e.stored;
      this.addBlob(e.id, n, e);
    }
    this.notePack(p.id, p.salt, p.entries.length, bytes);
  }

  /** Forgets everything (the index is then loaded again from the files there are). */
  clear(): void {
    this.blobTable = new BlobTable();
    this.packNames.length = 0;
    this.packNumbers.clear();
    this.packs.clear();
    this.files.clear();
  }

  /** Every blob location, for check and prune (one object per blob as it is reached). */
  *entries(): IterableIterator<[string, BlobLocation]> {
    for (let i = 0; i < this.table.size; i++) yield [this.table.idHex(i), this.locationAt(i)];
  }
}

/** A pack as the index file lists it: name, salt, and its blobs' rows read one by one. */
export interface IndexPackSource {
  id: string;
  salt?: string;
  count: number;
  /** Row `i`: [id, kind, flags, offset, stored, raw]. */
  row(i: number): [string, number, number, number, number, number];
}

/** At most this many blob rows go into one part of an index file's JSON (indexJsonParts). */
export const INDEX_PART_ROWS = 1024;

/**
 * The JSON of an index file for `packs` (docs/format.md) as consecutive parts, each made when it is
 * asked for: the opening, then each pack's rows INDEX_PART_ROWS at a time, then the closing. No part
 * holds more than INDEX_PART_ROWS rows, however many blobs a pack has, so a writer that compresses the
 * parts as they come (Repository.saveIndex) never holds the whole file's JSON (for a 2.3 GB agent
 * ~14 MB, and as much again joined).
 */
export function* indexJsonParts(packs: readonly IndexPackSource[]): Generator<Buffer, void, undefined> {
  yield Buffer.from('{"index_version":1,"packs":[');
  for (let n = 0; n < packs.length; n++) {
    const p = packs[n]!;
    let s = `${n > 0 ? ',' : ''}{"id":${JSON.stringify(p.id)},${p.salt ? `"salt":${JSON.stringify(p.salt)},` : ''}"blobs":[`;
    for (let i = 0; i < p.count; i++) {
      if (i > 0 && i % INDEX_PART_ROWS === 0) {
        yield Buffer.from(s);
        s = '';
      }
      s += `${i > 0 ? ',' : ''}${JSON.stringify(p.row(i))}`;
    }
    yield Buffer.from(`${s}]}`);
  }
  yield Buffer.from(']}');
}

/** The JSON of an index file for `packs` in one Buffer (small indexes; prune's rewrite). */
export function encodeIndexOf(packs: readonly IndexPackSource[]): Buffer {
  return Buffer.concat([...indexJsonParts(packs)]);
}

/** Pack records as the index file lists them. */
export function indexSources(packs: readonly PackRecord[]): IndexPackSource[] {
  return packs.map((p) => ({
    id: p.id,
    ...(p.salt ? { salt: p.salt } : {}),
    count: p.entries.length,
    row: (i: number) => {
      const e = p.entries[i]!;
      return [e.id, e.kind, e.flags, e.offset, e.stored, e.raw];
    },
  }));
}

/** The JSON of an index file for `packs`. */
export function encodeIndex(packs: readonly PackRecord[]): Buffer {
  return encodeIndexOf(indexSources(packs));
}

const isU32 = (v: unknown): v is number =>
  Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;

/** One pack of an index file as parsed: its name, salt and blob rows (checked by visitIndex). */
type Row = [string, BlobKind, number, number, number, number];

/**
 * Parses an index file's JSON and calls `visit` for each pack with its checked rows; every field is
 * checked (it comes from storage, so it is untrusted). The rows of one pack are handed over and dropped
 * pack by pack: no object per blob outlives its pack.
 */
function visitIndex(
  json: Buffer,
  what: string,
  visit: (id: string, salt: string | undefined, rows: readonly Row[]) => void,
): void {
  const bad = (why: string) => new BundleDamagedError(`${what}: ${why}`);
  const parse = (text: string): unknown => {
    try {
      return JSON.parse(text);
    } catch {
      throw new BundleDamagedError(`${what}: not JSON`);
    }
  };
  // The layout this package writes is parsed one pack at a time (the whole file's parsed JSON was a
  // spike of ~30 MB for a 2.3 GB agent's index); any other spelling of the same JSON, whole.
  const spans = packSpans(json);
  let packs: unknown[];
  if (spans) packs = spans;
  else {
    const raw = parse(json.toString('utf8'));
    if (typeof raw !== 'object' || raw === null) throw bad('not an object');
    const o = raw as { index_version?: unknown; packs?: unknown };
    // a newer writer's index file (stop 47: it was reported as damage, every snapshot "damaged")
    if (typeof o.index_version === 'number' && Number.isInteger(o.index_version) && o.index_version > 1)
      throw new SchemaTooNewError(o.index_version, 1, `${what}: index_version`, 'repository');
    if (o.index_version !== 1) throw bad(`unknown index_version ${String(o.index_version)}`);
    if (!Array.isArray(o.packs)) throw bad('packs is not an array');
    packs = o.packs as unknown[];
  }
  for (let i = 0; i < packs.length; i++) {
    const span = spans?.[i];
    const pr = (span ? parse(json.toString('utf8', span[0], span[1])) : packs[i]) as {
      id?: unknown;
      salt?: unknown;
      blobs?: unknown;
    };
    if (typeof pr?.id !== 'string' || !HEX64.test(pr.id)) throw bad(`packs[${i}].id is not a pack name`);
    if (pr.salt !== undefined && (typeof pr.salt !== 'string' || !/^[0-9a-f]{32}$/.test(pr.salt)))
      throw bad(`packs[${i}].salt is not 16 hex bytes`);
    if (!Array.isArray(pr.blobs)) throw bad(`packs[${i}].blobs is not an array`);
    const rows = pr.blobs as unknown[];
    for (let j = 0; j < rows.length; j++) {
      const b = rows[j];
      const [id, kind, flags, offset, stored, raw] = Array.isArray(b) ? b : [];
      if (
        typeof id !== 'string' ||
        !HEX64.test(id) ||
        (kind !== KIND_DATA && kind !== KIND_TREE) ||
        (flags !== 0 && flags !== 1) ||
        !Number.isSafeInteger(offset) ||
        offset < 0 ||
        !isU32(stored) ||
        !isU32(raw)
      )
        throw bad(`packs[${i}].blobs[${j}] is malformed`);
      // §4: no blob is longer than MAX_BLOB (a reader allocates its raw length to decompress it)
      if (raw > MAX_BLOB || stored > MAX_STORED)
        throw bad(`packs[${i}].blobs[${j}]: a blob of ${raw} bytes (${stored} stored) exceeds the limit`);
    }
    visit(pr.id, typeof pr.salt === 'string' ? pr.salt : undefined, rows as Row[]);
    packs[i] = undefined; // its rows can go now
  }
}

/** Parses an index file's JSON into pack records (prune, which rewrites index files). */
export function decodeIndex(json: Buffer, what: string): PackRecord[] {
  const out: PackRecord[] = [];
  visitIndex(json, what, (id, salt, rows) =>
    out.push({
      id,
      ...(salt ? { salt } : {}),
      entries: rows.map(([blob, kind, flags, offset, stored, raw]) => ({
        id: blob,
        kind,
        flags,
        offset,
        stored,
        raw,
      })),
    }),
  );
  return out;
}

/** The fewest bytes a blob's row takes in an index file's JSON: `["<64 hex>",0,0,0,0,0],`. */
const MIN_ROW_BYTES = 79;

/** Parses an index file's JSON straight into `index` (no object per blob kept). */
export function loadIndexInto(index: MasterIndex, json: Buffer, what: string): void {
  // at most this many rows: the table grows once, if at all, instead of doubling its way there
  index.table.reserve(index.table.size + Math.floor(json.length / MIN_ROW_BYTES));
  if (loadPlainIndex(index, json)) return;
  visitIndex(json, what, (id, salt, rows) => {
    const n = index.packNumber(id);
    let bytes = 0;
    for (const [blob, kind, flags, offset, stored, raw] of rows) {
      bytes += stored;
      index.addBlob(blob, n, { kind, flags, offset, stored, raw });
    }
    index.notePack(id, salt, rows.length, bytes);
  });
}

/** A pack's opening in the layout indexJsonParts writes: its name, its salt if any, its rows' array. */
const PLAIN_PACK = /\{"id":"([0-9a-f]{64})",(?:"salt":"([0-9a-f]{32})",)?"blobs":\[/y;
/**
 * A blob's row as indexJsonParts writes it, every field plainly valid: a lowercase hex id, a kind of
 * §4, a flag of 0 or 1, numbers in JSON's shortest spelling short enough to be an offset (at most 16
 * digits; its safe-integer bound is checked after) and two 32-bit lengths (at most 10 digits; their
 * bounds likewise).
 */
const PLAIN_ROW = new RegExp(
  `\\["([0-9a-f]{64})",(${KIND_DATA}|${KIND_TREE}),([01]),(0|[1-9][0-9]{0,15}),(0|[1-9][0-9]{0,9}),(0|[1-9][0-9]{0,9})\\]`,
  'y',
);

/** The rows of one pack as the plain reader collected them, before they are added (reused). */
class PlainRows {
  ids = Buffer.allocUnsafe(256 * 32);
  cols = new Float64Array(256 * 5);
  count = 0;

  push(id: string, kind: number, flags: number, offset: number, stored: number, raw: number): void {
    if ((this.count + 1) * 32 > this.ids.length) {
      const ids = Buffer.allocUnsafe(this.ids.length * 2);
      this.ids.copy(ids);
      this.ids = ids;
      const cols = new Float64Array(this.cols.length * 2);
      cols.set(this.cols);
      this.cols = cols;
    }
    this.ids.write(id, this.count * 32, 'hex');
    const c = this.count * 5;
    this.cols[c] = kind;
    this.cols[c + 1] = flags;
    this.cols[c + 2] = offset;
    this.cols[c + 3] = stored;
    this.cols[c + 4] = raw;
    this.count++;
  }
}

/**
 * Loads an index file of exactly the layout indexJsonParts writes, every field plainly valid, without
 * JSON.parse (for ref-170's 14,756 blobs the parse, an object per row, and a byte-by-byte split of the
 * file into packs took ~90-110 ms of a snapshot's or restore's CPU, the code cold): each pack's opening
 * and rows are matched by the sticky expressions above on that pack's text, and a pack's blobs are added
 * once all its rows matched. It only ever accepts: true when the whole file was read this way; false
 * at the first thing it does not take (another spelling, a field out of bounds, damage), and then
 * visitIndex reads the file as before and decides, with its errors. The packs added before are added
 * again then, which changes nothing (a pack's number, records and blobs' first locations are the same).
 */
export function loadPlainIndex(index: MasterIndex, json: Buffer): boolean {
  const end = json.length - SUFFIX.length;
  if (end < PREFIX.length || !json.subarray(0, PREFIX.length).equals(PREFIX)) return false;
  if (!json.subarray(end).equals(SUFFIX)) return false;
  const rows = new PlainRows();
  let at = PREFIX.length;
  while (at < end) {
    if (at > PREFIX.length) {
      if (json[at] !== COMMA) return false;
      at++;
    }
    // a pack's text ends at its rows' `]}`: hex and digits hold no brackets, so in this layout the first
    // `]}` after the opening is the pack's end (anything else fails the matches below)
    const close = json.indexOf(PACK_END, at);
    if (close < 0 || close + 2 > end) return false;
    const text = json.toString('latin1', at, close + 2);
    at = close + 2;
    PLAIN_PACK.lastIndex = 0;
    const head = PLAIN_PACK.exec(text);
    if (!head) return false;
    let pos = PLAIN_PACK.lastIndex;
    rows.count = 0;
    let bytes = 0;
    if (text.charCodeAt(pos) !== CLOSE_ARRAY) {
      for (;;) {
        PLAIN_ROW.lastIndex = pos;
        const m = PLAIN_ROW.exec(text);
        if (!m) return false;
        const offset = Number(m[4]);
        const stored = Number(m[5]);
        const raw = Number(m[6]);
        if (!Number.isSafeInteger(offset) || !isU32(stored) || !isU32(raw)) return false;
        if (raw > MAX_BLOB || stored > MAX_STORED) return false;
        rows.push(m[1]!, Number(m[2]), Number(m[3]), offset, stored, raw);
        bytes += stored;
        pos = PLAIN_ROW.lastIndex;
        if (text.charCodeAt(pos) !== COMMA) break;
        pos++;
      }
    }
    // the rows' `]` then the pack's `}`: the whole text
    if (pos + 2 !== text.length) return false;
    const n = index.packNumber(head[1]!);
    const { table } = index;
    const { ids, cols } = rows;
    for (let i = 0, c = 0; i < rows.count; i++, c += 5)
      table.addAt(ids, i * 32, n, cols[c]!, cols[c + 1]!, cols[c + 2]!, cols[c + 3]!, cols[c + 4]!);
    index.notePack(head[1]!, head[2], rows.count, bytes);
  }
  return true;
}

const PREFIX = Buffer.from('{"index_version":1,"packs":[');
const PACK_END = Buffer.from(']}');
const SUFFIX = Buffer.from(']}');
const [QUOTE, BACKSLASH, OPEN, CLOSE, OPEN_ARRAY, CLOSE_ARRAY, COMMA] = [...'"\\{}[],'].map((c) =>
  c.charCodeAt(0),
);

/**
 * Where each pack object is in an index file of exactly the layout encodeIndexOf writes (that prefix,
 * pack objects separated by commas, that suffix, no whitespace between them), each to be parsed on its
 * own; undefined for anything else (then the file is parsed whole, which also gives the errors).
 */
function packSpans(json: Buffer): [number, number][] | undefined {
  if (json.length < PREFIX.length + SUFFIX.length) return undefined;
  if (!json.subarray(0, PREFIX.length).equals(PREFIX)) return undefined;
  const end = json.length - SUFFIX.length;
  if (!json.subarray(end).equals(SUFFIX)) return undefined;
  const spans: [number, number][] = [];
  let at = PREFIX.length;
  if (at === end) return spans;
  for (;;) {
    if (json[at] !== OPEN) return undefined;
    const start = at;
    let depth = 0;
    let inString = false;
    for (; at < end; at++) {
      const c = json[at]!;
      if (inString) {
        if (c === BACKSLASH) at++;
        else if (c === QUOTE) inString = false;
      } else if (c === QUOTE) inString = true;
      else if (c === OPEN || c === OPEN_ARRAY) depth++;
      else if (c === CLOSE || c === CLOSE_ARRAY) {
        depth--;
        if (depth === 0) break;
      }
    }
    if (at >= end || depth !== 0 || json[at] !== CLOSE) return undefined;
    spans.push([start, ++at]);
    if (at === end) return spans;
    if (json[at] !== COMMA) return undefined;
    at++;
  }
}
