// docs/repository.md is enough to read a repository: this file is an independent reader of a local one
// (`<state_root>/repository`), written from that page (and format.md where it points there) alone —
// nothing from src/repository, src/format, src/crypto, src/backend or src/snapshotter. It reads the
// config, the listing, the index and packs, every manifest (seals, signature), every blob (checked
// against its id) and every artifact (checked against the manifest), rebuilds the git history from the
// pack chain, and is compared with the library: the same snapshots and metadata as `list`, and the
// same bytes and history as the library's `export` of each snapshot. zstd, age and git are the real
// CLIs; hashes, HKDF, ChaCha20-Poly1305 and Ed25519 are node:crypto, CRC-32 node:zlib.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createDecipheriv, createHash, createPublicKey, hkdfSync, verify } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { crc32 } from 'node:zlib';
import Database from 'better-sqlite3';
import { git } from '../scripts/sample-agent.js';
import {
  generateSigningKey,
  LocalSnapshotter,
  type LocalSnapshotterOptions,
  parseSigningKey,
} from '../src/index.js';
import { canonical, utf16 } from './helpers/canonical-json.js';
import { type Agent, sampleAgent, tempDir } from './helpers/env.js';
import { plantUnusualNames } from './helpers/unusual-names.js';

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const HEX64 = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const GIT_ENV = {
  ...process.env,
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  HOME: '/dev/null',
};

class Damage extends Error {}
function check(ok: unknown, what: string): asserts ok {
  if (!ok) throw new Damage(what);
}

// ---------------------------------------------------------------------------------------------------
// §5 (format.md §1): zstd frames that record their content size; the real zstd CLI decompresses

const MAX_FRAME = 256 * 1024 * 1024;

function frameContentSize(b: Buffer): number {
  check(b.length >= 6 && b.readUInt32LE(0) === 0xfd2fb528, 'zstd: not a frame');
  const fhd = b[4]!;
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  check((fhd >> 2) & 1, 'zstd: frame without a checksum');
  check(fcsFlag !== 0 || single, 'zstd: frame without a content size');
  const at = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]!;
  const size = [1, 2, 4, 8][fcsFlag]!;
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + b[at + i]!;
  return fcsFlag === 1 ? v + 256 : v;
}

const unzstd = (b: Buffer): Buffer => execFileSync('zstd', ['-dcq'], { input: b, maxBuffer: 1 << 30 });

/** An index file or manifest: one zstd frame with a content size of at most 256 MiB. */
function unframe(b: Buffer): Buffer {
  const size = frameContentSize(b);
  check(size <= MAX_FRAME, 'zstd: frame too large');
  const out = unzstd(b);
  check(out.length === size, 'zstd: content size');
  return out;
}

// ---------------------------------------------------------------------------------------------------
// §7: the age envelope

const aead = (key: Buffer, nonce: Buffer, sealed: Buffer): Buffer => {
  check(sealed.length >= 16, 'aead: shorter than its tag');
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  try {
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]);
  } catch {
    throw new Damage('aead: authentication failed');
  }
};
const derive = (master: Buffer, salt: Buffer, info: string): Buffer =>
  Buffer.from(hkdfSync('sha256', master, salt, Buffer.from(info, 'utf8'), 32));
const nonceOf = (n: number): Buffer => {
  const b = Buffer.alloc(12);
  b.writeUIntBE(n, 6, 6);
  return b;
};
const HEADER_NONCE = Buffer.alloc(12, 0xff);

/** An index or snapshot file: `salt | ChaCha20-Poly1305(key(info "nexo-memory file"), nonce 0, frame)`. */
function openFile(master: Buffer | undefined, b: Buffer): Buffer {
  if (!master) return b;
  return aead(derive(master, b.subarray(0, 16), 'nexo-memory file'), Buffer.alloc(12), b.subarray(16));
}

// ---------------------------------------------------------------------------------------------------
// format.md §5, §6: canonical JSON (strings escaped by hand), the signature's bech32 key

// (canonicalString, canonical, utf16: helpers/canonical-json.ts)

const CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
function bech32Data(s: string, wantHrp: string): Buffer {
  const sep = s.lastIndexOf('1');
  const hrp = s.slice(0, sep);
  check(hrp === wantHrp, 'bech32: prefix');
  const words = [...s.slice(sep + 1)].map((c) => CHARSET.indexOf(c));
  check(!words.includes(-1), 'bech32: character');
  let chk = 1;
  const gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  for (const v of [
    ...[...hrp].map((c) => c.charCodeAt(0) >> 5),
    0,
    ...[...hrp].map((c) => c.charCodeAt(0) & 31),
    ...words,
  ]) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= gen[i]!;
  }
  check(chk === 1, 'bech32: checksum');
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  for (const w of words.slice(0, -6)) {
    acc = (acc << 5) | w;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

// ---------------------------------------------------------------------------------------------------
// §3: where a writer cuts (a reader does not need it; computed here to hold the page to it)

/** §3.1: a database by pages; the end offsets of its chunks, or undefined when it is not one. */
function pageCuts(b: Buffer): number[] | undefined {
  if (b.length < 100 || !b.subarray(0, 16).equals(Buffer.from('SQLite format 3\0', 'latin1')))
    return undefined;
  const raw = b.readUInt16BE(16);
  const page = raw === 1 ? 65536 : raw;
  if (page < 512 || page > 65536 || (page & (page - 1)) !== 0) return undefined;
  const cuts: number[] = [];
  let pages = 0;
  for (let at = 0; at < b.length; at += page) {
    const end = Math.min(at + page, b.length);
    pages++;
    const low = (1 << CHUNKER.page_avg_bits) - 1;
    if (
      (pages >= CHUNKER.page_min && (crc32(b.subarray(at, end)) & low) === low) ||
      pages === CHUNKER.page_max
    ) {
      cuts.push(end);
      pages = 0;
    }
  }
  if (cuts.at(-1) !== b.length) cuts.push(b.length);
  return cuts;
}

/** `gear[v]`: the first 8 bytes of SHA-256 of the byte v, as two 32-bit halves. */
const GEAR = Array.from({ length: 256 }, (_, v) => {
  const d = createHash('sha256')
    .update(Buffer.from([v]))
    .digest();
  return [d.readUInt32BE(0), d.readUInt32BE(4)] as const;
});

/** §3.2: a file that is not a database. */
function gearCuts(b: Buffer): number[] {
  if (b.length <= CHUNKER.single_max) return [b.length];
  const cuts: number[] = [];
  const mask = ~0 << (32 - CHUNKER.file_avg_bits); // the high bits of the high half
  let start = 0;
  while (start < b.length) {
    let end = Math.min(start + CHUNKER.file_max, b.length);
    let hi = 0;
    let lo = 0;
    for (let at = start + CHUNKER.file_min - 64; at < end; at++) {
      const [ghi, glo] = GEAR[b[at]!]!;
      const l = ((lo << 1) >>> 0) + glo;
      hi = (((hi << 1) | (lo >>> 31)) + ghi + (l > 0xffffffff ? 1 : 0)) >>> 0;
      lo = l >>> 0;
      if (at + 1 - start >= CHUNKER.file_min && (hi & mask) === 0) {
        end = at + 1;
        break;
      }
    }
    cuts.push(end);
    start = end;
  }
  return cuts;
}

/** §3.3: a chunk list cut into tree blobs. */
function listCuts(ids: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  let run: Buffer[] = [];
  const low = (1 << 6) - 1;
  for (const id of ids) {
    run.push(id);
    if ((id[31]! & low) === low || run.length === 1024) {
      out.push(Buffer.concat(run));
      run = [];
    }
  }
  if (run.length > 0) out.push(Buffer.concat(run));
  return out;
}

/** What a writer would put in a reference to these bytes (§3, §6). */
function expectedRef(path: string, b: Buffer): { chunks?: string[]; chunk_lists?: string[] } {
  const cuts = (path.startsWith('sqlite/') && pageCuts(b)) || gearCuts(b);
  const ids: Buffer[] = [];
  let at = 0;
  for (const end of b.length === 0 ? [] : cuts) {
    ids.push(createHash('sha256').update(b.subarray(at, end)).digest());
    at = end;
  }
  if (ids.length === 1) return {};
  if (ids.length <= 64) return { chunks: ids.map((i) => i.toString('hex')) };
  return { chunk_lists: listCuts(ids).map((t) => sha256(t)) };
}

// ---------------------------------------------------------------------------------------------------
// The reader

interface IndexRow {
  pack: string;
  salt?: Buffer;
  kind: number;
  flags: number;
  offset: number;
  stored: number;
  raw: number;
}

interface Pack {
  bytes: Buffer;
  /** header entries by the offset of their blob */
  entries: Map<number, Buffer>;
  /** the header's salt (encrypted repositories) */
  salt: Buffer;
  /** every blob's plaintext by offset, once one was read */
  plain?: Map<number, Buffer>;
}

interface Artifact {
  path_in_bundle: string;
  kind: string;
  size_bytes: number;
  sha256: string;
  chunks?: string[];
  chunk_lists?: string[];
  packs?: Array<{ size_bytes: number; sha256: string; chunks?: string[]; chunk_lists?: string[] }>;
}

interface Manifest {
  manifest_version: number;
  bundle_format: string;
  snapshot_id: string;
  agent_id: string;
  tenant: string;
  label?: string;
  created_at_ms: number;
  schema_versions: Record<string, number>;
  git: { head_oid: string; repository: string; detached: boolean; head_ref?: string };
  git_refs?: Array<{ name: string; oid: string }>;
  artifacts: Artifact[];
  bundle_sha256: string;
  manifest_seal: string;
  repository_id: string;
  encryption?: { scheme: string; recipients_fingerprint: string[] };
  signature?: { scheme: string; key_id: string; public_key: string; value: string };
  [k: string]: unknown;
}

interface Listing {
  id: string;
  agent_id: string;
  tenant: string;
  created_at_ms: number;
  [k: string]: unknown;
}

const CHUNKER = {
  page_min: 1,
  page_avg_bits: 2,
  page_max: 32,
  file_min: 262144,
  file_avg_bits: 20,
  file_max: 4194304,
  single_max: 1048576,
};
const MAX_RAW = 16 * 1024 * 1024;
const DB = ['long_term', 'vector', 'concepts', 'compactions'];
const STATE = ['extract_cursor', 'dream_run'];
const QUIRKS = [
  'badDate',
  'badDateOverflow',
  'badEmail',
  'badFilemode',
  'badName',
  'badTimezone',
  'extraHeaderEntry',
  'missingEmail',
  'missingNameBeforeEmail',
  'missingSpaceBeforeDate',
  'missingSpaceBeforeEmail',
  'missingTaggerEntry',
  'multipleAuthors',
  'nulInCommit',
  'zeroPaddedDate',
  'zeroPaddedFilemode',
];

function files(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

class RepositoryReader {
  readonly config: Record<string, unknown>;
  readonly master?: Buffer;
  readonly index = new Map<string, IndexRow[]>();
  /** Each index file's packs, by the file's name. */
  readonly indexFiles = new Map<string, string[]>();
  /** The blobs the last `read` read, by id: to see what two snapshots share. */
  readonly blobsRead = new Set<string>();
  /** References whose cut is not where §3 says a writer cuts. */
  readonly miscut: string[] = [];
  /** What was read, to show the test reached each path of the page. */
  readonly seen = { chunk_lists: 0, chunks: 0, whole: 0, uncompressed: 0, compressed: 0, trees: 0 };
  private readonly packs = new Map<string, Pack>();

  constructor(
    readonly root: string,
    identity?: string,
  ) {
    this.config = JSON.parse(readFileSync(join(root, 'config', 'config'), 'utf8'));
    const c = this.config;
    check(c.repository_version === 1, 'config: unknown repository_version');
    check(typeof c.id === 'string' && HEX64.test(c.id), 'config: id');
    assert.deepEqual(c.chunker, CHUNKER, 'config: chunker');
    check(c.list_avg_bits === 6, 'config: list_avg_bits');
    const enc = c.encryption as {
      scheme: string;
      recipients_fingerprint: string[];
      key_file?: string;
    } | null;
    if (enc !== null) {
      check(enc.scheme === 'age-envelope', 'config: encryption scheme');
      check(identity, 'an encrypted repository needs an identity');
      // §7: the key file the config names (a writer since stop 55 always names one)
      check(typeof enc.key_file === 'string' && HEX64.test(enc.key_file), 'config: encryption.key_file');
      const name = enc.key_file as string;
      const bytes = readFileSync(join(root, 'keys', name));
      check(sha256(bytes) === name, `keys/${name}: not its hash`);
      const plain = execFileSync('age', ['-d', '-i', identity], { input: bytes, stdio: 'pipe' });
      this.master = Buffer.from(JSON.parse(plain.toString('utf8')).master_key, 'base64');
      check(this.master?.length === 32, 'the key file holds no 32-byte master key');
    }
    // §5: the index is the union of all index files
    for (const name of files(join(root, 'index'))) {
      const bytes = readFileSync(join(root, 'index', name));
      check(sha256(bytes) === name, `index/${name}: not its hash`);
      const frame = openFile(this.master, bytes);
      // §5: at most 16 times its frame plus 65,536 bytes, from the header
      check(frameContentSize(frame) <= 16 * frame.length + 65536, `index/${name}: frame claims too much`);
      const doc = JSON.parse(unframe(frame).toString('utf8'));
      check(doc.index_version === 1, 'index: version');
      this.indexFiles.set(
        name,
        (doc.packs as Array<{ id: string }>).map((p) => p.id),
      );
      for (const p of doc.packs as Array<{ id: string; salt?: string; blobs: number[][] }>) {
        check(HEX64.test(p.id), 'index: pack id');
        if (this.master)
          check(typeof p.salt === 'string' && /^[0-9a-f]{32}$/.test(p.salt), 'index: pack salt');
        for (const [id, kind, flags, offset, stored, raw] of p.blobs as unknown as Array<
          [string, number, number, number, number, number]
        >) {
          check(HEX64.test(id), 'index: blob id');
          check(kind === 1 || kind === 2, 'index: kind');
          check(flags === 0 || flags === 1, 'index: flags');
          check(raw <= MAX_RAW, 'index: raw length above 16 MiB');
          const row: IndexRow = { pack: p.id, kind, flags, offset, stored, raw };
          if (p.salt) row.salt = Buffer.from(p.salt, 'hex');
          this.index.set(id, [...(this.index.get(id) ?? []), row]);
        }
      }
    }
  }

  get encrypted(): boolean {
    return this.master !== undefined;
  }

  /** §8: the listing entries a reader accepts (any other is skipped). */
  listing(): Listing[] {
    const out: Listing[] = [];
    for (const name of files(join(this.root, 'listing'))) {
      if (!UUID.test(name)) continue;
      const text = readFileSync(join(this.root, 'listing', name), 'utf8');
      if (!text.endsWith('\n')) continue;
      let doc: { listing_version?: unknown; meta?: Listing };
      try {
        doc = JSON.parse(text);
      } catch {
        continue;
      }
      const m = doc.meta;
      const count = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
      const id = (v: unknown) =>
        typeof v === 'string' && v.length <= 64 && /^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$/.test(v);
      const str = (v: unknown) => typeof v === 'string';
      const hex =
        (...n: number[]) =>
        (v: unknown) =>
          typeof v === 'string' && /^[0-9a-f]+$/.test(v) && n.includes(v.length);
      const bool = (v: unknown) => typeof v === 'boolean';
      const schema = (v: unknown) =>
        !!v &&
        typeof v === 'object' &&
        ['long_term', 'vector', 'concepts', 'compactions', 'manifest'].every((k) =>
          count((v as Record<string, unknown>)[k]),
        );
      const format = (v: unknown) => typeof v === 'string' && /^nexo-memory-snapshot-v[1-9][0-9]*$/.test(v);
      const present: Array<[string, (v: unknown) => boolean]> = [
        ['bundle_size_bytes', count],
        ['added_bytes', count],
        ['label', str],
        ['created_by', str],
        ['bundle_sha256', hex(64)],
        ['git_oid', hex(40, 64)],
        ['schema_versions', schema],
        ['encrypted', bool],
        ['redactions_applied', bool],
        ['bundle_format', format],
        ['signed_by', hex(16)],
      ];
      if (
        doc.listing_version === 1 &&
        m &&
        m.id === name &&
        id(m.agent_id) &&
        id(m.tenant) &&
        Number.isInteger(m.created_at_ms) &&
        m.created_at_ms >= 0 &&
        m.created_at_ms <= 8.64e15 &&
        present.every(
          ([k, ok]) =>
            (m as unknown as Record<string, unknown>)[k] === undefined ||
            ok((m as unknown as Record<string, unknown>)[k]),
        )
      )
        out.push(m);
    }
    return out;
  }

  /** §4: a pack, checked against its name, and its header's entries by offset. */
  private pack(id: string): Pack {
    const have = this.packs.get(id);
    if (have) return have;
    const bytes = readFileSync(join(this.root, 'packs', id.slice(0, 2), id));
    check(sha256(bytes) === id, `packs/${id}: not its hash`);
    check(bytes.subarray(bytes.length - 8).equals(Buffer.from('NXPK1\0\0\0', 'latin1')), 'pack: magic');
    const headerLength = bytes.readUInt32LE(bytes.length - 12);
    const end = bytes.length - 12;
    const start = end - headerLength;
    check(start >= 0, 'pack: header length');
    let header: Buffer = bytes.subarray(start, end);
    const salt = header.subarray(0, 16);
    if (this.master) {
      header = aead(derive(this.master, salt, 'nexo-memory pack'), HEADER_NONCE, header.subarray(16));
    }
    check(header.length % 42 === 0, 'pack: header entries');
    const entries = new Map<number, Buffer>();
    let offset = 0;
    for (let at = 0; at < header.length; at += 42) {
      const e = header.subarray(at, at + 42);
      entries.set(offset, e);
      offset += e.readUInt32LE(6);
    }
    check(offset === start, 'pack: stored lengths do not add up to the blobs');
    const out = { bytes, entries, salt };
    this.packs.set(id, out);
    return out;
  }

  /**
   * §4: every blob of a pack as stored (decrypted with the key of the index's salt and the blob's
   * offset as nonce), then decompressed: the zstd frames of the pack in one run of the zstd CLI (it
   * writes concatenated frames' content one after the other), cut by the header's raw lengths.
   */
  private unpack(p: Pack, salt: Buffer | undefined): Map<number, Buffer> {
    const key = this.master && derive(this.master, salt!, 'nexo-memory pack');
    const stored = [...p.entries].map(([offset, e]) => {
      const b = p.bytes.subarray(offset, offset + e.readUInt32LE(6));
      return { offset, e, b: key ? aead(key, nonceOf(offset), b) : b };
    });
    const frames = stored.filter((x) => x.e[1] === 0);
    const all = frames.length ? unzstd(Buffer.concat(frames.map((x) => x.b))) : Buffer.alloc(0);
    const out = new Map<number, Buffer>();
    let at = 0;
    for (const x of stored) {
      check(x.e[1] === 0 || x.e[1] === 1, 'pack: flags');
      check(x.e.readUInt32LE(2) <= MAX_RAW, 'pack: raw length above 16 MiB');
      if (x.e[1] === 1) out.set(x.offset, x.b);
      else {
        const n = x.e.readUInt32LE(2);
        out.set(x.offset, all.subarray(at, at + n));
        at += n;
      }
    }
    check(at === all.length, 'pack: decompressed length');
    return out;
  }

  /** §3, §4: one blob through the index, checked against its header entry and its id. */
  blob(id: string, kind: number): Buffer {
    const rows = this.index.get(id);
    check(rows, `blob ${id}: not in the index`);
    const r = rows[0]!;
    check(r.kind === kind, `blob ${id}: kind`);
    const p = this.pack(r.pack);
    const e = p.entries.get(r.offset);
    check(e, `blob ${id}: no header entry at its offset`);
    check(
      e[0] === r.kind &&
        e[1] === r.flags &&
        e.readUInt32LE(2) === r.raw &&
        e.readUInt32LE(6) === r.stored &&
        e.subarray(10).toString('hex') === id,
      `blob ${id}: index and pack header disagree`,
    );
    if (this.master)
      check(r.salt && p.salt.equals(r.salt), `pack ${r.pack}: the index's salt is not the header's`);
    p.plain ??= this.unpack(p, r.salt);
    this.seen[r.flags === 1 ? 'uncompressed' : 'compressed']++;
    if (kind === 2) this.seen.trees++;
    const raw = p.plain.get(r.offset)!;
    check(raw.length === r.raw, `blob ${id}: raw length`);
    check(sha256(raw) === id, `blob ${id}: not its hash`);
    this.blobsRead.add(id);
    return raw;
  }

  /** §3.3, §6: a file's content from `chunks`, `chunk_lists`, or neither (one chunk, its own hash). */
  content(ref: { size_bytes: number; sha256: string; chunks?: string[]; chunk_lists?: string[] }): Buffer {
    check(!(ref.chunks && ref.chunk_lists), 'chunks and chunk_lists');
    let ids: string[];
    if (ref.chunks) {
      check(ref.chunks.length <= 1024, 'more than 1024 chunks');
      ids = ref.chunks;
    } else if (ref.chunk_lists) {
      const list = Buffer.concat(ref.chunk_lists.map((t) => this.blob(t, 2)));
      check(list.length % 32 === 0, 'chunk list length');
      ids = [];
      for (let at = 0; at < list.length; at += 32) ids.push(list.subarray(at, at + 32).toString('hex'));
    } else ids = [ref.sha256];
    this.seen[ref.chunks ? 'chunks' : ref.chunk_lists ? 'chunk_lists' : 'whole']++;
    check(ids.length <= ref.size_bytes, 'more chunks than bytes');
    const out = Buffer.concat(ids.map((c) => this.blob(c, 1)));
    check(out.length === ref.size_bytes, 'size');
    check(sha256(out) === ref.sha256, 'sha256');
    return out;
  }

  /** §6: a snapshot manifest, with its rules, seals and (v5) signature. */
  manifest(id: string): Manifest {
    const bytes = readFileSync(join(this.root, 'snapshots', id));
    const m = JSON.parse(unframe(openFile(this.master, bytes)).toString('utf8')) as Manifest;
    const v = m.manifest_version;
    check(v === 4 || v === 5, `manifest: version ${v}`);
    check(
      m.bundle_format === `nexo-memory-snapshot-v${v}` && m.schema_versions.manifest === v,
      'versions disagree',
    );
    check(m.snapshot_id === id, 'snapshot id');
    check(m.repository_id === this.config.id, 'repository id');
    check((m.encryption !== undefined) === this.encrypted, 'encryption block');
    if (m.encryption) {
      const enc = this.config.encryption as { recipients_fingerprint: string[] };
      check(m.encryption.scheme === 'age-envelope', 'encryption scheme');
      assert.deepEqual(m.encryption.recipients_fingerprint, enc.recipients_fingerprint);
    }
    check(sha256(m.artifacts.map((a) => a.sha256).join('')) === m.bundle_sha256, 'digest seal');
    const { manifest_seal: _seal, signature: _sig, ...sealed } = m;
    if (v === 4) check(m.signature === undefined, 'v4 with a signature');
    else check(m.signature !== undefined, 'v5 without a signature');
    check(sha256(Buffer.from(canonical(sealed), 'utf8')) === m.manifest_seal, 'manifest seal');
    if (m.signature) {
      const s = m.signature;
      check(s.scheme === 'ed25519', 'signature scheme');
      const raw = bech32Data(s.public_key, 'nexo-sign-pub');
      const keyId = createHash('sha256')
        .update('nexo-memory-snapshot/key-id\n')
        .update(raw)
        .digest('hex')
        .slice(0, 16);
      check(keyId === s.key_id, 'key id');
      const key = createPublicKey({
        key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
        format: 'jwk',
      });
      const message = `nexo-memory-snapshot/manifest-signature/v1\n${m.bundle_format}\n${m.manifest_seal}`;
      check(verify(null, Buffer.from(message, 'utf8'), key, Buffer.from(s.value, 'base64')), 'signature');
    }
    // format.md §3: paths and order, the history in the git bundle's place
    const rank = (p: string): number => {
      const fixed = [
        ...DB.map((d) => `sqlite/${d}.sqlite`),
        ...STATE.map((k) => `state/${k}.json`),
        'git/history',
      ];
      const i = fixed.indexOf(p);
      if (i >= 0) return i;
      check(p.startsWith('memory_files/'), `path ${p}`);
      return fixed.length;
    };
    for (let i = 1; i < m.artifacts.length; i++) {
      const [a, b] = [m.artifacts[i - 1]!.path_in_bundle, m.artifacts[i]!.path_in_bundle];
      const [ra, rb] = [rank(a), rank(b)];
      check(
        ra < rb || (ra === rb && ra === 7 && Buffer.compare(Buffer.from(a), Buffer.from(b)) < 0),
        `order: ${b}`,
      );
    }
    for (const a of m.artifacts) {
      check(a.kind !== 'git_bundle', 'a git_bundle artifact');
      check((a.kind === 'git_history') === (a.path_in_bundle === 'git/history'), 'git/history kind');
      check((a.packs !== undefined) === (a.kind === 'git_history'), 'packs on another artifact');
    }
    // git_refs: sorted, each once, HEAD the head oid, oids as long as head_oid
    const refs = m.git_refs ?? [];
    const history = m.artifacts.some((a) => a.kind === 'git_history');
    check(refs.length === 0 || history, 'git_refs without a history');
    for (let i = 0; i < refs.length; i++) {
      const r = refs[i]!;
      check(r.oid.length === m.git.head_oid.length && /^[0-9a-f]+$/.test(r.oid), `ref ${r.name}: oid`);
      if (r.name === 'HEAD') check(r.oid === m.git.head_oid && m.git.detached, 'HEAD ref');
      else
        check(
          r.name.startsWith('refs/') && !r.name.includes('..') && !/(^|\/)\.|\.lock(\/|$)/.test(r.name),
          `ref ${r.name}`,
        );
      // names compared as UTF-16 code units (docs/repository.md §6, as canonical JSON's member names)
      if (i > 0) check(Buffer.compare(utf16(refs[i - 1]!.name), utf16(r.name)) < 0, 'git_refs order');
    }
    return m;
  }

  /** §6: every artifact but the history, path → bytes; the history rebuilt into `gitDir`. */
  read(m: Manifest, gitDir: string): Map<string, Buffer> {
    this.blobsRead.clear();
    const out = new Map<string, Buffer>();
    for (const a of m.artifacts) {
      const cut = (path: string, ref: Parameters<RepositoryReader['content']>[0], bytes: Buffer): void => {
        const want = expectedRef(path, bytes);
        const same = (r: { chunks?: string[]; chunk_lists?: string[] }) =>
          JSON.stringify([r.chunks ?? null, r.chunk_lists ?? null]);
        if (same(want) !== same(ref)) this.miscut.push(`${path} (${bytes.length} bytes)`);
      };
      if (a.kind !== 'git_history') {
        const bytes = this.content(a);
        cut(a.path_in_bundle, a, bytes);
        out.set(a.path_in_bundle, bytes);
        continue;
      }
      const packs = a.packs!;
      check(packs.length <= 4096, 'more than 4096 packs');
      check(a.size_bytes === packs.reduce((n, p) => n + p.size_bytes, 0), 'history size');
      check(a.sha256 === sha256(packs.map((p) => p.sha256).join('')), 'history sha256');
      const format = m.git.head_oid.length === 64 ? 'sha256' : 'sha1';
      execFileSync('git', ['init', '-q', '--bare', `--object-format=${format}`, gitDir], { env: GIT_ENV });
      packs.forEach((p, i) => {
        const bytes = this.content(p);
        cut(`git/history pack ${i}`, p, bytes);
        execFileSync(
          'git',
          ['index-pack', '--stdin', `--strict=${QUIRKS.map((q) => `${q}=ignore`).join(',')}`, '--fix-thin'],
          { cwd: gitDir, input: bytes, env: GIT_ENV, stdio: ['pipe', 'pipe', 'pipe'] },
        );
      });
      for (const r of m.git_refs ?? [])
        if (r.name !== 'HEAD')
          execFileSync('git', ['update-ref', r.name, r.oid], { cwd: gitDir, env: GIT_ENV });
      if (m.git.detached)
        execFileSync('git', ['update-ref', '--no-deref', 'HEAD', m.git.head_oid], {
          cwd: gitDir,
          env: GIT_ENV,
        });
      else execFileSync('git', ['symbolic-ref', 'HEAD', m.git.head_ref!], { cwd: gitDir, env: GIT_ENV });
      check(gitOut(gitDir, ['rev-parse', 'HEAD']) === m.git.head_oid, 'HEAD is not head_oid');
      execFileSync('git', ['fsck', '--connectivity-only', '--no-progress'], {
        cwd: gitDir,
        env: GIT_ENV,
        stdio: 'pipe',
      });
    }
    return out;
  }
}

const gitOut = (dir: string, args: string[]): string =>
  execFileSync('git', args, { cwd: dir, env: GIT_ENV, maxBuffer: 1 << 28 })
    .toString('utf8')
    .trim();

/** A history compared by its refs (name → oid) and its reachable objects. */
function historyOf(dir: string): { refs: string; objects: string } {
  return {
    refs: gitOut(dir, ['for-each-ref', '--format=%(objectname) %(refname)']),
    objects: gitOut(dir, ['rev-list', '--objects', '--all']).split('\n').sort().join('\n'),
  };
}

// ---------------------------------------------------------------------------------------------------
// The library's answers: list, and export of a snapshot into a bundle read with GNU tar and git

const SMALL = { files: 4, commits: 3, memories: 150, embeddings: 20, concepts: 10, compactions: 3 };
// (a label may not hold line separators, U+2028/U+2029, nor controls: model/ids.ts)
const LABEL = 'quote " backslash \\ slash / é \u00a0 \u{1F600}';

function repoAgent(t: TestContext, snap: Partial<LocalSnapshotterOptions> = {}): Agent {
  const a = sampleAgent(t, 'ana', SMALL, { store: 'repository', ...snap });
  plantUnusualNames(a.memdir);
  // content no text decoder would keep as it is
  writeFileSync(
    join(a.memdir, 'notes', 'bytes.md'),
    Buffer.from([0, 0xff, 0xfe, 0x0d, 0x0a, 0xc3, 0x28, 0x80]),
  );
  git(a.memdir, ['add', '-A']);
  git(a.memdir, ['commit', '-qm', 'unusual names']);
  // refs whose order differs by UTF-8 bytes and by UTF-16 units (U+1F600 against U+FF5E), and tags
  for (const b of ['\u{1F600}', '\uFF5E', 'Z', 'a/b', 'é']) git(a.memdir, ['branch', b]);
  git(a.memdir, ['tag', 'v1']);
  git(a.memdir, ['tag', '-a', '-m', 'annotated é', 'v1-annotated']);
  return a;
}

async function exported(
  t: TestContext,
  a: Agent,
  id: string,
  identity?: string,
): Promise<{ files: Map<string, Buffer>; history: { refs: string; objects: string } }> {
  const out = tempDir(t);
  const r = await a.snapshotter.export('ana', undefined, id, out, {
    redact: false,
    decryptIdentity: identity,
  });
  let bytes = readFileSync(r.path);
  if (identity) bytes = execFileSync('age', ['-d', '-i', identity], { input: bytes, maxBuffer: 1 << 30 });
  const dir = join(out, 'x');
  mkdirSync(dir);
  execFileSync('tar', ['-x', '-C', dir], { input: unzstd(bytes) });
  const files = new Map<string, Buffer>();
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p);
      else if (p !== 'manifest.json' && p !== 'git/memdir.bundle') files.set(p, readFileSync(join(dir, p)));
    }
  };
  walk('');
  const clone = join(out, 'clone.git');
  execFileSync('git', ['clone', '-q', '--mirror', join(dir, 'git', 'memdir.bundle'), clone], {
    env: GIT_ENV,
  });
  return { files, history: historyOf(clone) };
}

/** Reads every listed snapshot and compares it with `list` and `export`; returns the manifests. */
async function readAndCompare(
  t: TestContext,
  a: Agent,
  identity?: string,
): Promise<{
  manifests: Manifest[];
  seen: RepositoryReader['seen'];
  blobs: Set<string>[];
  index: RepositoryReader['index'];
}> {
  const r = new RepositoryReader(join(a.stateRoot, 'repository'), identity);
  const listed = r.listing();
  const library = await a.snapshotter.list('ana');
  assert.deepEqual(listed.map((l) => l.id).sort(), library.map((s) => s.id).sort(), 'the same snapshots');
  const manifests: Manifest[] = [];
  const blobs: Set<string>[] = [];
  for (const entry of listed) {
    const lib = library.find((s) => s.id === entry.id)! as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(entry)) assert.deepEqual(lib[k], v, `${entry.id}: ${k} as list says`);
    const m = r.manifest(entry.id);
    assert.equal(m.agent_id, entry.agent_id);
    assert.equal(m.tenant, entry.tenant);
    assert.equal(m.created_at_ms, entry.created_at_ms);
    assert.equal(m.bundle_sha256, entry.bundle_sha256);
    assert.equal(m.label, entry.label);
    assert.equal(
      entry.bundle_size_bytes,
      m.artifacts.reduce((n, x) => n + x.size_bytes, 0),
    );
    const gitDir = join(tempDir(t), 'history.git');
    const mine = r.read(m, gitDir);
    const theirs = await exported(t, a, entry.id, identity);
    assert.deepEqual(
      [...mine.keys()],
      [...theirs.files.keys()].sort((x, y) => {
        const p = (s: string) => m.artifacts.findIndex((q) => q.path_in_bundle === s);
        return p(x) - p(y);
      }),
    );
    for (const [path, bytes] of mine)
      assert.ok(bytes.equals(theirs.files.get(path)!), `${path}: byte for byte`);
    assert.deepEqual(historyOf(gitDir), theirs.history, 'the same history');
    manifests.push(m);
    blobs.push(new Set(r.blobsRead));
  }
  assert.deepEqual(r.miscut, [], 'every file cut where §3 says');
  // §8: what each snapshot stored is the size of the pack files it wrote (one index file per snapshot
  // that wrote packs, §5)
  const packBytes = (p: string) => statSync(join(r.root, 'packs', p.slice(0, 2), p)).size;
  assert.deepEqual(
    listed
      .map((l) => l.added_bytes as number)
      .filter((n) => n > 0)
      .sort((x, y) => x - y),
    [...r.indexFiles.values()]
      .map((packs) => packs.reduce((n, p) => n + packBytes(p), 0))
      .sort((x, y) => x - y),
    'added_bytes: the pack files each snapshot wrote',
  );
  return { manifests, seen: r.seen, blobs, index: r.index };
}

// ---------------------------------------------------------------------------------------------------

/** `n` bytes that look random and are the same on every run (SHA-256 in counter mode). */
function seeded(seed: string, n: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i * 32 < n; i++) parts.push(createHash('sha256').update(`${seed}/${i}`).digest());
  return Buffer.concat(parts).subarray(0, n);
}

/**
 * Enough to be cut: a database of ~2 MiB (more than 64 page-aligned chunks: chunk lists), and a memory
 * file of 1.25 MiB (more than `single_max`: the gear hash, which cuts it once) that the history holds too.
 */
function grow(a: Agent): void {
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  db.exec('CREATE TABLE big (b BLOB)');
  const add = db.prepare('INSERT INTO big (b) VALUES (?)');
  for (let i = 0; i < 64; i++) add.run(seeded(`row ${i}`, 32 * 1024));
  db.close();
  writeFileSync(join(a.memdir, 'notes', 'big.bin'), seeded('1', 1280 * 1024));
  git(a.memdir, ['add', '-A']);
  git(a.memdir, ['commit', '-qm', 'big']);
}

test('an independent reader of docs/repository.md reads two snapshots that share blobs as list and export do', async (t) => {
  const a = repoAgent(t);
  grow(a);
  await a.snapshotter.snapshot({ agentId: 'ana', label: LABEL });
  writeFileSync(join(a.memdir, 'notes', 'é.md'), '# changed\n');
  git(a.memdir, ['commit', '-qam', 'second']);
  const db = new Database(join(a.sqliteDir, 'long_term.sqlite'));
  db.prepare('UPDATE big SET b = ? WHERE rowid = 10').run(seeded('changed', 32 * 1024));
  db.close();
  await a.snapshotter.snapshot({ agentId: 'ana', label: 'two' });

  const { manifests: ms, seen, blobs, index } = await readAndCompare(t, a);
  const [first, second] = blobs as [Set<string>, Set<string>];
  const shared = [...second].filter((b) => first.has(b));
  assert.ok(shared.length > 0 && shared.length < second.size, 'the second snapshot shares some blobs');
  for (const b of shared) assert.equal(index.get(b)!.length, 1, 'a shared blob is stored once');
  assert.equal(files(join(a.stateRoot, 'repository', 'index')).length, 2);
  assert.equal(
    ms[1]!.artifacts.find((x) => x.kind === 'git_history')!.packs!.length,
    2,
    'a thin pack on the first',
  );
  for (const [what, n] of Object.entries(seen)) assert.ok(n > 0, `the page's ${what} were read`);
  assert.deepEqual(
    ms.map((m) => m.manifest_version),
    [4, 4],
  );
  assert.ok(ms.some((m) => m.label === LABEL));
  assert.ok(ms[0]!.artifacts.some((x) => x.path_in_bundle === 'memory_files/notes/\u{1F600}.md'));
  const kinds = new Set(ms[0]!.artifacts.map((x) => x.path_in_bundle.split('/')[0]));
  assert.deepEqual([...kinds].sort(), ['git', 'memory_files', 'sqlite', 'state'], 'every kind of artifact');
  assert.equal(ms[0]!.artifacts.filter((x) => x.path_in_bundle.startsWith('sqlite/')).length, 4);
  const big = ms[0]!.artifacts.find((x) => x.path_in_bundle === 'memory_files/notes/big.bin')!;
  assert.equal(big.chunks?.length, 2, 'the gear hash cut the big file once');
  assert.ok(ms[0]!.artifacts.find((x) => x.path_in_bundle === 'sqlite/long_term.sqlite')!.chunk_lists);
});

test('the independent reader opens an encrypted repository with the identity (age envelope, §7) and a signed v5 snapshot', async (t) => {
  const dir = tempDir(t);
  const identity = join(dir, 'id.txt');
  execFileSync('age-keygen', ['-o', identity], { stdio: 'pipe' });
  const recipient = execFileSync('age-keygen', ['-y', identity]).toString('utf8').trim();
  const key = generateSigningKey();
  const a = repoAgent(t, {
    recipients: [recipient],
    identityPath: identity,
    signingKey: parseSigningKey(key.secretKey),
  });
  await a.snapshotter.snapshot({ agentId: 'ana', label: LABEL });
  writeFileSync(join(a.memdir, 'notes', 'with space.md'), 'changed\n');
  git(a.memdir, ['checkout', '-q', '--detach']);
  git(a.memdir, ['commit', '-qam', 'detached']);
  await a.snapshotter.snapshot({ agentId: 'ana', sign: false });
  // nothing but config, listing and names in the clear
  for (const f of files(join(a.stateRoot, 'repository', 'index')))
    assert.throws(() => unframe(readFileSync(join(a.stateRoot, 'repository', 'index', f))));
  assert.throws(() => new RepositoryReader(join(a.stateRoot, 'repository')), /needs an identity/);
  const { manifests: ms } = await readAndCompare(t, a, identity);
  assert.deepEqual(ms.map((m) => m.manifest_version).sort(), [4, 5]);
  assert.equal(ms.find((m) => m.manifest_version === 5)!.signature!.key_id, key.keyId);
  assert.ok(ms.every((m) => m.encryption?.scheme === 'age-envelope'));
  const detached = ms.find((m) => m.git.detached)!;
  assert.deepEqual(detached.git_refs!.map((r) => r.name).slice(0, 2), ['HEAD', 'refs/heads/Z']);
  assert.ok(
    detached.git_refs!.findIndex((r) => r.name === 'refs/heads/\u{1F600}') <
      detached.git_refs!.findIndex((r) => r.name === 'refs/heads/\uFF5E'),
    'git_refs sorted by UTF-16 code units, not by UTF-8 bytes',
  );
});

test('what the independent reader refuses, verify refuses; the listing entries it skips, list skips', async (t) => {
  const a = repoAgent(t);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const repo = join(a.stateRoot, 'repository');
  const readAll = () => {
    const r = new RepositoryReader(repo);
    r.read(r.manifest(snap.id), join(tempDir(t), 'h.git'));
  };
  readAll();
  const flipped = async (file: string, at: number, refusal: RegExp) => {
    const bytes = readFileSync(file);
    bytes[at]! ^= 0x01;
    writeFileSync(file, bytes);
    assert.throws(readAll, refusal, file);
    // verify by a snapshotter of its own: a process that read an index file before it was damaged
    // keeps the copy it read (and checked), docs/repository.md §12
    const fresh = new LocalSnapshotter({
      stateRoot: a.stateRoot,
      memdirRoot: a.memdirRoot,
      sqliteRoot: a.sqliteRoot,
      store: 'repository',
    });
    const outcome = await fresh.verifySnapshot('ana', undefined, snap.id).then(
      (r) => r.status,
      (e: { code?: string }) => e.code,
    );
    assert.ok(outcome === 'damaged' || outcome === 'BUNDLE_DAMAGED', `${file}: ${outcome}`);
    bytes[at]! ^= 0x01;
    writeFileSync(file, bytes);
  };
  const packs = join(repo, 'packs');
  const pack = readdirSync(packs).flatMap((d) =>
    readdirSync(join(packs, d)).map((f) => join(packs, d, f)),
  )[0]!;
  await flipped(pack, 10, /not its hash/);
  await flipped(join(repo, 'index', files(join(repo, 'index'))[0]!), 20, /not its hash/);
  readAll();

  // §8: entries a reader skips are not snapshots for list either
  const entry = JSON.parse(readFileSync(join(repo, 'listing', snap.id), 'utf8'));
  const as = (n: number, edit: (doc: { listing_version: number; meta: Record<string, unknown> }) => void) => {
    const id = `00000000-0000-7000-8000-00000000000${n}`;
    const doc = { ...entry, meta: { ...entry.meta, id } };
    edit(doc);
    writeFileSync(join(repo, 'listing', id), `${JSON.stringify(doc)}\n`);
  };
  as(1, (d) => (d.meta.id = snap.id)); // not its name
  as(2, (d) => (d.listing_version = 2));
  as(3, (d) => (d.meta.created_at_ms = -1));
  as(4, (d) => (d.meta.added_bytes = 1.5));
  as(5, (d) => (d.meta.tenant = 7));
  as(6, (d) => (d.meta.label = 7));
  as(7, (d) => (d.meta.agent_id = 'Bad Id'));
  as(8, (d) => (d.meta.schema_versions = { long_term: 1 }));
  assert.deepEqual(
    new RepositoryReader(repo).listing().map((l) => l.id),
    [snap.id],
  );
  assert.deepEqual(
    (await a.snapshotter.list('ana')).map((s) => s.id),
    [snap.id],
  );
});

test('a manifest the independent reader refuses, verify refuses (§6 rules, seals)', async (t) => {
  const a = repoAgent(t);
  const snap = await a.snapshotter.snapshot({ agentId: 'ana' });
  const repo = join(a.stateRoot, 'repository');
  const file = join(repo, 'snapshots', snap.id);
  const original = readFileSync(file);
  const json = unframe(original).toString('utf8');
  const cases: Array<[string, (m: Manifest) => void, boolean]> = [
    ['resealed, unchanged (accepted: the forging itself is not what is refused)', () => {}, true],
    ['label edited, seal kept', (m) => (m.label = 'edited'), false],
    ['git_refs out of order', (m) => m.git_refs!.reverse(), true],
    ['another repository', (m) => (m.repository_id = 'f'.repeat(64)), true],
    [
      'v4 with a signature',
      (m) => (m.signature = { scheme: 'ed25519', key_id: '0'.repeat(16), public_key: 'x', value: 'AA==' }),
      true,
    ],
    [
      'the history as a git_bundle',
      (m) => (m.artifacts.find((x) => x.kind === 'git_history')!.kind = 'git_bundle'),
      true,
    ],
  ];
  for (const [name, edit, reseal] of cases) {
    const m = JSON.parse(json) as Manifest;
    edit(m);
    if (reseal) {
      const { manifest_seal: _s, signature: _g, ...sealed } = m;
      m.manifest_seal = sha256(Buffer.from(canonical(sealed), 'utf8'));
    }
    const text = JSON.stringify(m);
    writeFileSync(
      file,
      execFileSync('zstd', ['-q', '-c', `--stream-size=${Buffer.byteLength(text)}`], { input: text }),
    );
    const accepted = name.startsWith('resealed, unchanged');
    if (accepted) new RepositoryReader(repo).manifest(snap.id);
    else assert.throws(() => new RepositoryReader(repo).manifest(snap.id), Damage, name);
    const fresh = new LocalSnapshotter({
      stateRoot: a.stateRoot,
      memdirRoot: a.memdirRoot,
      sqliteRoot: a.sqliteRoot,
      store: 'repository',
    });
    const outcome = await fresh.verifySnapshot('ana', undefined, snap.id).then(
      (r) => r.status,
      (e: { code?: string }) => e.code,
    );
    if (accepted) assert.equal(outcome, 'verified', name);
    else assert.ok(outcome === 'damaged' || outcome === 'BUNDLE_DAMAGED', `${name}: ${outcome}`);
  }
  writeFileSync(file, original);
  new RepositoryReader(repo).manifest(snap.id);
});
