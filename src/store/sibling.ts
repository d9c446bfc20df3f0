// Owns the `.sha256` sibling of a bundle: written atomically as 64 bare lowercase hex characters (the
// original's format); read leniently (ASCII whitespace around it, uppercase, and the `sha256sum` forms
// "<hex>  <name>" and "<hex> *<name>": the first token is the digest).

import { readRegularFileSync } from '../util/regular-file.js';
import { writeFileAtomic } from './atomic.js';
import { siblingPathOf } from './paths.js';

export type SiblingRead =
  | { status: 'ok'; sha256: string }
  | { status: 'missing' }
  | { status: 'unreadable'; reason: string };

/** The most a sibling may hold: a digest, and in the sha256sum form a file name after it. */
const SIBLING_MAX_BYTES = 64 * 1024;

export async function readSibling(bundlePath: string): Promise<SiblingRead> {
  // a regular file only, never waited on (a FIFO) nor read past the bound (/dev/zero): stop 48
  const read = readRegularFileSync(siblingPathOf(bundlePath), SIBLING_MAX_BYTES);
  if (read.status === 'absent') return { status: 'missing' };
  if (read.status === 'unusable') return { status: 'unreadable', reason: read.reason };
  const text = read.bytes.toString('utf8');
  // ASCII whitespace only (docs/format.md §1): the first token is the digest, the rest (a sha256sum
  // file name) is ignored.
  const first =
    text
      .replace(/^[\t\n\v\f\r ]+/, '')
      .split(/[\t\n\v\f\r ]/)[0]
      ?.toLowerCase() ?? '';
  if (!/^[0-9a-f]{64}$/.test(first)) return { status: 'unreadable', reason: 'not a SHA-256 hex digest' };
  return { status: 'ok', sha256: first };
}

export async function writeSibling(bundlePath: string, sha256: string): Promise<void> {
  await writeFileAtomic(siblingPathOf(bundlePath), sha256, 0o644);
}
