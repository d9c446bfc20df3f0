// Owns the repository index (docs/repository.md §5): the in-memory map from blob id to where it is
// stored (pack, offset, lengths), and the index files it is read from and written to.

import { BundleDamagedError } from '../model/errors.js';
import { type BlobKind, KIND_DATA, KIND_TREE, type PackEntry } from './pack.js';

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
  private readonly blobs = new Map<string, BlobLocation>();
  readonly packs = new Map<string, { salt?: string; blobs: number; bytes: number }>();
  /** Index files merged into this one. */
  readonly files = new Set<string>();

  get blobCount(): number {
    return this.blobs.size;
  }

  has(id: string): boolean {
    return this.blobs.has(id);
  }

  get(id: string): BlobLocation | undefined {
    return this.blobs.get(id);
  }

  addPack(p: PackRecord): void {
    let bytes = 0;
    for (const e of p.entries) {
      bytes += e.stored;
      if (!this.blobs.has(e.id))
        this.blobs.set(e.id, {
          pack: p.id,
          kind: e.kind,
          flags: e.flags,
          offset: e.offset,
          stored: e.stored,
          raw: e.raw,
        });
    }
    this.packs.set(p.id, { ...(p.salt ? { salt: p.salt } : {}), blobs: p.entries.length, bytes });
  }

  /** Forgets everything (the index is then loaded again from the files there are). */
  clear(): void {
    this.blobs.clear();
    this.packs.clear();
    this.files.clear();
  }

  /** Every blob location, for check and prune. */
  entries(): IterableIterator<[string, BlobLocation]> {
    return this.blobs.entries();
  }
}

/** The JSON of an index file for `packs`. */
export function encodeIndex(packs: readonly PackRecord[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      index_version: 1,
      packs: packs.map((p) => ({
        id: p.id,
        ...(p.salt ? { salt: p.salt } : {}),
        blobs: p.entries.map((e) => [e.id, e.kind, e.flags, e.offset, e.stored, e.raw]),
      })),
    }),
  );
}

const isU32 = (v: unknown): v is number =>
  Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;

/** Parses an index file's JSON; every field is checked (it comes from storage, so it is untrusted). */
export function decodeIndex(json: Buffer, what: string): PackRecord[] {
  let raw: unknown;
  try {
    raw = JSON.parse(json.toString('utf8'));
  } catch {
    throw new BundleDamagedError(`${what}: not JSON`);
  }
  const bad = (why: string) => new BundleDamagedError(`${what}: ${why}`);
  if (typeof raw !== 'object' || raw === null) throw bad('not an object');
  const o = raw as { index_version?: unknown; packs?: unknown };
  if (o.index_version !== 1) throw bad(`unknown index_version ${String(o.index_version)}`);
  if (!Array.isArray(o.packs)) throw bad('packs is not an array');
  return o.packs.map((p: unknown, i) => {
    const pr = p as { id?: unknown; salt?: unknown; blobs?: unknown };
    if (typeof pr?.id !== 'string' || !HEX64.test(pr.id)) throw bad(`packs[${i}].id is not a pack name`);
    if (pr.salt !== undefined && (typeof pr.salt !== 'string' || !/^[0-9a-f]{32}$/.test(pr.salt)))
      throw bad(`packs[${i}].salt is not 16 hex bytes`);
    if (!Array.isArray(pr.blobs)) throw bad(`packs[${i}].blobs is not an array`);
    const entries = pr.blobs.map((b: unknown, j) => {
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
      return { id, kind, flags, offset, stored, raw } as PackEntry;
    });
    return { id: pr.id, ...(typeof pr.salt === 'string' ? { salt: pr.salt } : {}), entries };
  });
}
