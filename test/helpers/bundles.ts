// Test helpers that build bundles byte by byte, hostile ones included: raw tar headers of any type,
// GNU long names, the original's v1 header style (NUL numeric fields, NUL type flag), zstd via the
// real `zstd` CLI, manifests sealed or tampered, and reading a real bundle back into editable entries.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  createReadStream,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestSeal, manifestSeal } from '../../src/format/manifest.js';
import { readTar } from '../../src/format/tar.js';
import { zstdDecompress } from '../../src/format/zstd.js';

export interface RawEntry {
  path: string;
  data?: Buffer | string;
  /** Tar type flag: '0' (default), '1' hardlink, '2' symlink, '5' dir, … or '\0'. */
  type?: string;
  linkpath?: string;
  /** Size written in the header (default: the data length). */
  headerSize?: number;
}

export interface TarStyle {
  /** The original's headers: GNU magic, NUL numeric uid/gid, NUL type flag, GNU long names. */
  v1?: boolean;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function octal(buf: Buffer, off: number, width: number, v: number): void {
  buf.write(`${v.toString(8).padStart(width - 1, '0')}\0`, off, width, 'latin1');
}

export function rawHeader(
  name: string,
  size: number,
  type: string,
  linkpath = '',
  style: TarStyle = {},
): Buffer {
  const b = Buffer.alloc(512);
  Buffer.from(name, 'utf8').copy(b, 0, 0, 100);
  octal(b, 100, 8, 0o600);
  if (!style.v1) {
    octal(b, 108, 8, 0);
    octal(b, 116, 8, 0);
  }
  octal(b, 124, 12, size);
  octal(b, 136, 12, 0);
  b.write(style.v1 && type === '0' ? '\0' : type, 156, 1, 'latin1');
  Buffer.from(linkpath, 'utf8').copy(b, 157, 0, 100);
  if (style.v1) b.write('ustar  \0', 257, 8, 'latin1');
  else {
    b.write('ustar\0', 257, 6, 'latin1');
    b.write('00', 263, 2, 'latin1');
  }
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : b[i]!;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return b;
}

const pad = (n: number): Buffer => Buffer.alloc((512 - (n % 512)) % 512);

/** A tar archive of `entries` (long names as GNU 'L' entries), ended by two zero blocks. */
export function tarOf(entries: RawEntry[], style: TarStyle = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = Buffer.from(e.data ?? '');
    if (Buffer.byteLength(e.path) > 100) {
      const long = Buffer.from(`${e.path}\0`, 'utf8');
      parts.push(rawHeader('././@LongLink', long.length, 'L', '', style), long, pad(long.length));
    }
    parts.push(
      rawHeader(e.path, e.headerSize ?? data.length, e.type ?? '0', e.linkpath ?? '', style),
      data,
      pad(data.length),
    );
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export function zstd(buf: Buffer, level = 3): Buffer {
  return execFileSync('zstd', ['-q', `-${level}`, '-c'], { input: buf, maxBuffer: 1 << 30 });
}

/**
 * zstd (the CLI, level 3) of `prefix` followed by `zeros` zero bytes, the zeros never in this process's
 * memory: they are a sparse extension of a scratch file that zstd reads. A bomb's hundreds of MB cost
 * this process nothing (built in memory, each fresh page of them was a page fault, twice over).
 */
export function zstdWithZeros(prefix: Buffer, zeros: number): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'nexo-zeros-'));
  try {
    const file = join(dir, 'input');
    writeFileSync(file, prefix);
    truncateSync(file, prefix.length + zeros);
    return execFileSync('zstd', ['-q', '-3', '-c', file], { maxBuffer: 1 << 30 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Writes `bytes` as a bundle at `path`, with a correct sibling unless told otherwise. */
export function writeBundleFile(
  path: string,
  bytes: Buffer,
  sibling: 'ok' | 'none' | 'wrong' = 'ok',
): string {
  writeFileSync(path, bytes);
  if (sibling === 'ok') writeFileSync(`${path}.sha256`, sha(bytes));
  if (sibling === 'wrong') writeFileSync(`${path}.sha256`, sha(Buffer.concat([bytes, Buffer.from('x')])));
  return path;
}

export interface ArtifactSpec {
  path: string;
  kind: string;
  data: Buffer | string;
}

/**
 * A manifest object for `artifacts` (v2 by default: no repository, a memdir block when there are memory
 * files), sealed like the real writer seals it. The artifacts must be given in the format's order.
 */
export function manifestFor(
  artifacts: ArtifactSpec[],
  overrides: Record<string, unknown> = {},
  version: 1 | 2 = 2,
): Record<string, unknown> {
  const list = artifacts.map((a) => {
    const b = Buffer.from(a.data);
    return { path_in_bundle: a.path, kind: a.kind, size_bytes: b.length, sha256: sha(b) };
  });
  const m: Record<string, unknown> = {
    manifest_version: version,
    bundle_format: `nexo-memory-snapshot-v${version}`,
    snapshot_id: '0190c3a2-0000-7000-8000-000000000001',
    agent_id: 'ana',
    tenant: 'default',
    created_at_ms: 1_760_000_000_000,
    created_by: 'test',
    schema_versions: { long_term: 1, vector: 1, concepts: 1, compactions: 1, manifest: version },
    git: {
      head_oid: '0'.repeat(40),
      head_subject: '(no memdir)',
      head_author: 'nexo-memory-snapshot <ops@example.com>',
      head_ts_ms: 0,
    },
    artifacts: list,
    tool_versions: { nexo_version: '0.1.0', git2: '0.19', sqlx: '0.8' },
  };
  if (version === 2) {
    // what v2 requires besides: the repository state, and the memdir block when there are memory files
    Object.assign(m.git as object, { repository: 'absent', detached: false });
    const files = list.filter((a) => a.kind === 'memory_file');
    if (files.length > 0)
      m.memdir = { files: files.length, bytes: files.reduce((n, a) => n + a.size_bytes, 0), skipped: [] };
  }
  Object.assign(m, overrides);
  m.bundle_sha256 = digestSeal(m.artifacts as Array<{ sha256: string }>);
  if (version === 2) m.manifest_seal = manifestSeal(m);
  return m;
}

/** Recomputes both seals of a manifest object after a test edited it. */
export function reseal(m: Record<string, unknown>): Record<string, unknown> {
  m.bundle_sha256 = digestSeal(m.artifacts as Array<{ sha256: string }>);
  if (m.manifest_version === 2) {
    delete m.manifest_seal;
    m.manifest_seal = manifestSeal(m);
  }
  return m;
}

/** A complete bundle: manifest first, then the artifacts, plus `extra` raw entries appended. */
export function bundleOf(
  manifest: Record<string, unknown>,
  artifacts: ArtifactSpec[],
  extra: RawEntry[] = [],
  style: TarStyle = {},
): Buffer {
  return zstd(
    tarOf(
      [
        { path: 'manifest.json', data: JSON.stringify(manifest, null, 2) },
        ...artifacts.map((a) => ({ path: a.path, data: a.data })),
        ...extra,
      ],
      style,
    ),
  );
}

/** Reads every entry of a real bundle into memory (tests only; bundles there are small). */
export async function readEntries(
  path: string,
): Promise<Array<{ path: string; data: Buffer; type: string }>> {
  const out: Array<{ path: string; data: Buffer; type: string }> = [];
  const limit = { maxBytes: 1 << 30, produced: 0 };
  for await (const e of readTar(zstdDecompress(createReadStream(path) as AsyncIterable<Buffer>, limit))) {
    const parts: Buffer[] = [];
    for await (const c of e.body()) parts.push(Buffer.from(c));
    out.push({ path: e.path, data: Buffer.concat(parts), type: e.type });
  }
  return out;
}

/**
 * Repacks edited entries of a real bundle: in one zstd frame, or (`frames: 'git'`) as the writer frames
 * them, a second frame starting at the git bundle's header (format/writer.ts).
 */
export function repack(
  entries: Array<{ path: string; data: Buffer; type?: string }>,
  frames: 'one' | 'git' = 'one',
): Buffer {
  const raw = entries.map((e) => ({ path: e.path, data: e.data, type: e.type ?? '0' }));
  const tar = tarOf(raw);
  const git = raw.findIndex((e) => e.path === 'git/memdir.bundle');
  if (frames === 'one' || git < 0) return zstd(tar);
  return zstdSplit(tar, tarOf(raw.slice(0, git)).length - 1024);
}

/** zstd (the CLI) of `buf` in two frames, the second starting at byte `at` of it. */
export function zstdSplit(buf: Buffer, at: number): Buffer {
  return Buffer.concat([zstd(buf.subarray(0, at)), zstd(buf.subarray(at))]);
}

export type Entries = Array<{ path: string; data: Buffer; type?: string }>;

/**
 * A bundle forged from the entries of a real one, as an attacker who recomputes every hash would:
 * `edit` changes the manifest object and the entries; then each artifact's size and SHA-256 are taken
 * from its entry, and (unless told otherwise) the digest seal and the manifest seal are recomputed.
 * `text` may rewrite the manifest's JSON text at the end (for what JSON.stringify cannot write).
 */
/**
 * For forgeBundle's `edit`: adds memory files (path in the bundle, bytes) to the manifest and the
 * entries, keeping the canonical order (memory files last, sorted by their UTF-8 bytes; entries in
 * manifest order). forgeBundle then sets their sizes and hashes.
 */
export function addMemoryFiles(
  m: Record<string, unknown>,
  rest: Entries,
  files: ReadonlyArray<readonly [string, Buffer]>,
): void {
  const arts = m.artifacts as Array<Record<string, unknown>>;
  for (const [path, data] of files) {
    arts.push({ path_in_bundle: path, kind: 'memory_file', size_bytes: 0, sha256: '0'.repeat(64) });
    rest.push({ path, data });
  }
  const isMem = (x: Record<string, unknown>) => String(x.path_in_bundle).startsWith('memory_files/');
  const mem = arts
    .filter(isMem)
    .sort((x, y) =>
      Buffer.compare(Buffer.from(String(x.path_in_bundle)), Buffer.from(String(y.path_in_bundle))),
    );
  m.artifacts = [...arts.filter((x) => !isMem(x)), ...mem];
  const order = new Map((m.artifacts as Array<Record<string, unknown>>).map((x, i) => [x.path_in_bundle, i]));
  rest.sort((x, y) => order.get(x.path)! - order.get(y.path)!);
}

export function forgeBundle(
  entries: Entries,
  edit: (m: Record<string, unknown>, entries: Entries) => void,
  opts: { reseal?: boolean; text?: (json: string) => string; frames?: 'one' | 'git' } = {},
): Buffer {
  const m = JSON.parse(entries[0]!.data.toString()) as Record<string, unknown>;
  const rest = entries.slice(1).map((e) => ({ ...e }));
  edit(m, rest);
  const byPath = new Map(rest.map((e) => [e.path, e.data]));
  for (const a of m.artifacts as Array<{ path_in_bundle: string; size_bytes: number; sha256: string }>) {
    const data = byPath.get(a.path_in_bundle);
    if (!data) continue;
    a.size_bytes = data.length;
    a.sha256 = sha(data);
  }
  if (opts.reseal !== false) {
    m.bundle_sha256 = digestSeal(m.artifacts as Array<{ sha256: string }>);
    if ('manifest_seal' in m) m.manifest_seal = manifestSeal(m);
  }
  let json = JSON.stringify(m, null, 2);
  if (opts.text) json = opts.text(json);
  return repack([{ path: 'manifest.json', data: Buffer.from(json) }, ...rest], opts.frames);
}

/** The byte offset where the pack starts in a git bundle (after the blank line ending the header). */
export function packOffset(gitBundle: Buffer): number {
  const end = gitBundle.indexOf('\n\n');
  if (end === -1) throw new Error('not a git bundle');
  return end + 2;
}

/** A PAX extended header entry ('x') carrying `records` in order (duplicates allowed: tests need them). */
export function paxEntry(records: Array<[string, string]>): RawEntry {
  const text = records
    .map(([k, v]) => {
      const body = ` ${k}=${v}\n`;
      let len = Buffer.byteLength(body) + 1;
      while (String(len).length + Buffer.byteLength(body) !== len)
        len = String(len).length + Buffer.byteLength(body);
      return `${len}${body}`;
    })
    .join('');
  return { path: 'PaxHeader/x', type: 'x', data: text };
}

/** Every file of a `.git` directory by its path inside it (a v1 bundle ships them raw). */
export function rawGitFiles(gitDir: string): Map<string, Buffer> {
  const raw = new Map<string, Buffer>();
  const walk = (d: string): void => {
    for (const e of readdirSync(join(gitDir, d), { withFileTypes: true })) {
      const rel = d ? `${d}/${e.name}` : e.name;
      if (e.isDirectory()) walk(rel);
      else if (e.isFile()) raw.set(rel, readFileSync(join(gitDir, rel)));
    }
  };
  walk('');
  return raw;
}
