// Owns the compact in-memory tables of blob ids (docs/repository.md §5): 32-byte ids kept side by side in
// one Buffer, found through an open-addressing hash table of Int32 slots, and — in a BlobTable — each
// blob's location (pack number, offset, stored and raw length, kind and flags) in typed arrays beside
// them. About 60-120 bytes per blob, against several hundred for a Map of 64-character hex strings to
// objects; the index, the writer's pending blobs and check's per-pack lists are built on it, so their
// memory no longer dominates the peak RSS of a large agent.

import { randomBytes } from 'node:crypto';

const ID = 32;
const HEX64 = /^[0-9a-f]{64}$/;
const FIRST_CAPACITY = 1024;
/**
 * Per process: the slot of an id is not predictable from the id (ids in an index come from storage, and
 * anyone who can write the repository chooses them). Every one of the 8 words of an id is mixed in
 * with its own key word, and a final avalanche spreads each bit of the last words over the slot bits:
 * ids that share any part — even 31 bytes — land in unrelated slots, so crafted ids cannot build a long
 * probe chain (docs/repository.md §5).
 */
const SEED = randomBytes(ID);
const K = Array.from({ length: ID / 4 }, (_, i) => SEED.readUInt32LE(i * 4));
const [K0, K1, K2, K3, K4, K5, K6, K7] = K as [
  number,
  number,
  number,
  number,
  number,
  number,
  number,
  number,
];

/** A set of 32-byte ids, numbered 0, 1, … in the order they were added. */
export class IdTable {
  protected ids: Buffer;
  private slots: Int32Array;
  private mask: number;
  protected capacity: number;
  private count = 0;
  private readonly probe = Buffer.alloc(ID);

  constructor(initialCapacity = FIRST_CAPACITY) {
    let cap = FIRST_CAPACITY;
    while (cap < initialCapacity) cap *= 2;
    this.capacity = cap;
    this.ids = Buffer.allocUnsafe(cap * ID);
    this.slots = new Int32Array(cap * 2);
    this.mask = cap * 2 - 1;
  }

  get size(): number {
    return this.count;
  }

  /**
   * Slots looked at past the first, over the table's life: a structural measure of how long the probe
   * chains are (tests bound it; a flood of colliding ids would make it grow with the square of the ids).
   */
  probes = 0;

  private slotOf(buf: Buffer, at: number): number {
    let h = Math.imul(buf.readUInt32LE(at) ^ K0, 0x9e3779b1);
    h = Math.imul((h ^ (h >>> 15)) + (buf.readUInt32LE(at + 4) ^ K1), 0x85ebca6b);
    h = Math.imul((h ^ (h >>> 13)) + (buf.readUInt32LE(at + 8) ^ K2), 0xc2b2ae35);
    h = Math.imul((h ^ (h >>> 16)) + (buf.readUInt32LE(at + 12) ^ K3), 0x27d4eb2f);
    h = Math.imul((h ^ (h >>> 15)) + (buf.readUInt32LE(at + 16) ^ K4), 0x9e3779b1);
    h = Math.imul((h ^ (h >>> 13)) + (buf.readUInt32LE(at + 20) ^ K5), 0x85ebca6b);
    h = Math.imul((h ^ (h >>> 16)) + (buf.readUInt32LE(at + 24) ^ K6), 0xc2b2ae35);
    h = Math.imul((h ^ (h >>> 15)) + (buf.readUInt32LE(at + 28) ^ K7), 0x27d4eb2f);
    // murmur3's finaliser: every input bit reaches the low (slot) bits
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) & this.mask;
  }

  /** The id as 32 bytes (a hex string is decoded into a reused buffer); undefined when it is no id. */
  private key(id: string | Buffer): Buffer | undefined {
    if (typeof id !== 'string') return id.length === ID ? id : undefined;
    if (!HEX64.test(id)) return undefined;
    this.probe.write(id, 0, 'hex');
    return this.probe;
  }

  /** The number of `id` (64 lowercase hex characters or 32 bytes), or -1 when it is not in the table. */
  find(id: string | Buffer): number {
    const k = this.key(id);
    if (!k) return -1;
    for (let s = this.slotOf(k, 0); ; s = (s + 1) & this.mask, this.probes++) {
      const e = this.slots[s]!;
      if (e === 0) return -1;
      if (this.sameId(k, (e - 1) * ID)) return e - 1;
    }
  }

  /** Whether the 32 bytes of `k` are the id stored at byte `at` (in JavaScript: cheaper than a native call). */
  private sameId(k: Buffer, at: number, kAt = 0): boolean {
    const ids = this.ids;
    for (let j = 0; j < ID; j += 4) if (k.readUInt32LE(kAt + j) !== ids.readUInt32LE(at + j)) return false;
    return true;
  }

  has(id: string | Buffer): boolean {
    return this.find(id) >= 0;
  }

  /**
   * Adds `id` unless it is there: its number, and whether it was added. Throws on a string that is not
   * 64 lowercase hex characters or a Buffer that is not 32 bytes.
   */
  insert(id: string | Buffer): { index: number; added: boolean } {
    const k = this.key(id);
    if (!k) throw new TypeError(`not a blob id: ${typeof id === 'string' ? id : `${id.length} bytes`}`);
    const r = this.insertAt(k, 0);
    return r >= 0 ? { index: r, added: true } : { index: -1 - r, added: false };
  }

  /**
   * Adds the id at bytes `at`…`at + 32` of `buf` unless it is there: its number when added, -1 - its
   * number when it was there already (no object per call: the index loader adds thousands at a time).
   */
  protected insertAt(buf: Buffer, at: number): number {
    let s = this.slotOf(buf, at);
    for (; ; s = (s + 1) & this.mask, this.probes++) {
      const e = this.slots[s]!;
      if (e === 0) break;
      if (this.sameId(buf, (e - 1) * ID, at)) return -e;
    }
    if (this.count === this.capacity) {
      this.grow();
      s = this.slotOf(buf, at);
      while (this.slots[s] !== 0) s = (s + 1) & this.mask;
    }
    const index = this.count++;
    buf.copy(this.ids, index * ID, at, at + ID);
    this.slots[s] = index + 1;
    return index;
  }

  /** The id numbered `i`, as hex. */
  idHex(i: number): string {
    return this.ids.toString('hex', i * ID, i * ID + ID);
  }

  /** The id numbered `i`: a view, valid until the table next grows. */
  idBytes(i: number): Buffer {
    return this.ids.subarray(i * ID, i * ID + ID);
  }

  /**
   * Room for at least `count` ids without growing on the way (a caller that knows how many are coming
   * spares the intermediate tables, each garbage once outgrown).
   */
  reserve(count: number): void {
    let cap = this.capacity;
    while (cap < count) cap *= 2;
    if (cap > this.capacity) this.grow(cap);
  }

  /** More capacity (twice by default): ids copied, slots rebuilt (load factor stays at most 1/2). */
  private grow(cap = this.capacity * 2): void {
    const ids = Buffer.allocUnsafe(cap * ID);
    this.ids.copy(ids, 0, 0, this.count * ID);
    this.ids = ids;
    this.slots = new Int32Array(cap * 2);
    this.mask = cap * 2 - 1;
    for (let i = 0; i < this.count; i++) {
      let s = this.slotOf(this.ids, i * ID);
      while (this.slots[s] !== 0) s = (s + 1) & this.mask;
      this.slots[s] = i + 1;
    }
    this.growColumns(cap);
    this.capacity = cap;
  }

  /** A subclass grows its per-id columns to `cap` entries here. */
  protected growColumns(_cap: number): void {}
}

/** Where a blob is stored: its pack (a number the table's owner maps to a name), offset and lengths. */
export interface TableLocation {
  pack: number;
  kind: number;
  flags: number;
  offset: number;
  stored: number;
  raw: number;
}

/** An IdTable with each blob's location; the first location added for an id is kept. */
export class BlobTable extends IdTable {
  private pack: Uint32Array;
  private offsets: Float64Array;
  private storedLen: Uint32Array;
  private rawLen: Uint32Array;
  private kindFlags: Uint8Array;

  constructor(initialCapacity = FIRST_CAPACITY) {
    super(initialCapacity);
    this.pack = new Uint32Array(this.capacity);
    this.offsets = new Float64Array(this.capacity);
    this.storedLen = new Uint32Array(this.capacity);
    this.rawLen = new Uint32Array(this.capacity);
    this.kindFlags = new Uint8Array(this.capacity);
  }

  protected override growColumns(cap: number): void {
    const grown = <T extends Uint32Array | Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.pack = grown(this.pack, (n) => new Uint32Array(n));
    this.offsets = grown(this.offsets, (n) => new Float64Array(n));
    this.storedLen = grown(this.storedLen, (n) => new Uint32Array(n));
    this.rawLen = grown(this.rawLen, (n) => new Uint32Array(n));
    this.kindFlags = grown(this.kindFlags, (n) => new Uint8Array(n));
  }

  /**
   * Adds the blob whose id is at bytes `at`…`at + 32` of `ids`, with its location, unless the id is
   * there (as add, without an object per blob).
   */
  addAt(
    ids: Buffer,
    at: number,
    pack: number,
    kind: number,
    flags: number,
    offset: number,
    stored: number,
    raw: number,
  ): void {
    if (at < 0 || at + ID > ids.length) throw new RangeError('BlobTable.addAt: no 32-byte id there');
    const i = this.insertAt(ids, at);
    if (i < 0) return;
    this.pack[i] = pack;
    this.offsets[i] = offset;
    this.storedLen[i] = stored;
    this.rawLen[i] = raw;
    this.kindFlags[i] = (kind & 0x0f) | ((flags & 0x0f) << 4);
  }

  /** Adds a blob and its location unless the id is there (then the earlier location stays). */
  add(id: string | Buffer, loc: TableLocation): { index: number; added: boolean } {
    const r = this.insert(id);
    if (r.added) {
      const i = r.index;
      this.pack[i] = loc.pack;
      this.offsets[i] = loc.offset;
      this.storedLen[i] = loc.stored;
      this.rawLen[i] = loc.raw;
      this.kindFlags[i] = (loc.kind & 0x0f) | ((loc.flags & 0x0f) << 4);
    }
    return r;
  }

  packOf(i: number): number {
    return this.pack[i]!;
  }

  offsetOf(i: number): number {
    return this.offsets[i]!;
  }

  storedOf(i: number): number {
    return this.storedLen[i]!;
  }

  rawOf(i: number): number {
    return this.rawLen[i]!;
  }

  kindOf(i: number): number {
    return this.kindFlags[i]! & 0x0f;
  }

  flagsOf(i: number): number {
    return this.kindFlags[i]! >> 4;
  }

  location(i: number): TableLocation {
    return {
      pack: this.pack[i]!,
      kind: this.kindOf(i),
      flags: this.flagsOf(i),
      offset: this.offsets[i]!,
      stored: this.storedLen[i]!,
      raw: this.rawLen[i]!,
    };
  }
}
