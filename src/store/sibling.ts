// Owns the `.sha256` sibling of a bundle: written atomically as 64 bare lowercase hex characters (the
// original's format); read leniently (ASCII whitespace around it, uppercase, and the `sha256sum` forms
// "<hex>  <name>" and "<hex> *<name>": the first token is the digest).

import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from './atomic.js';
import { siblingPathOf } from './paths.js';

export type SiblingRead =
  | { status: 'ok'; sha256: string }
  | { status: 'missing' }
  | { status: 'unreadable'; reason: string };

export async function readSibling(bundlePath: string): Promise<SiblingRead> {
  let text: string;
  try {
    text = await readFile(siblingPathOf(bundlePath), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    return { status: 'unreadable', reason: (err as Error).message };
  }
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
