// Owns the pins of repository master keys (docs/encryption.md, "The repository's master key"): on
// first use, the fingerprint of an encrypted repository's master key is written in the local state
// root under the repository's id, and every later open of that repository from this state root must
// find the same key, trust on first use as ssh's known_hosts. Someone who can write the repository but
// not the state root cannot make a writer here seal new snapshots under a master key of theirs.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EncryptionError } from '../model/errors.js';
import { makeDirs } from '../util/make-dirs.js';
import { writeNewFile } from '../util/new-file.js';
import type { RepoKey } from './crypto.js';

const HEX64 = /^[0-9a-f]{64}$/;

/** The fingerprint of a master key: SHA-256 of a fixed label and the key (the key is not recoverable). */
export const masterKeyFingerprint = (key: RepoKey): string =>
  createHash('sha256')
    .update('nexo-memory-snapshot/master-key-fingerprint\0')
    .update(key.master)
    .digest('hex');

/**
 * Checks `key` against the fingerprint pinned in `dir` for repository `repositoryId`, pinning it when
 * there is none. EncryptionError when another key is pinned: the repository's key files were changed
 * since this state root first opened it.
 */
export async function pinMasterKey(dir: string, repositoryId: string, key: RepoKey): Promise<void> {
  if (!HEX64.test(repositoryId)) throw new EncryptionError(`not a repository id: ${repositoryId}`);
  const file = join(dir, repositoryId);
  const fingerprint = masterKeyFingerprint(key);
  let pinned = await readPin(file);
  if (pinned === undefined) {
    await makeDirs(dir, 0o700);
    await writeNew(file, `${fingerprint}\n`);
    pinned = await readPin(file); // two first uses at once: the one that landed first is the pin
  }
  if (pinned !== fingerprint)
    throw new EncryptionError(
      `the master key the identity opens in this repository (${repositoryId}) is not the one this state root pinned for it on first use (${file}): a key file was replaced or planted by someone who can write the repository; nothing is read or written with it. If the repository's keys were changed on purpose, remove that file`,
    );
}

async function readPin(file: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const pin = text.trim();
  if (!HEX64.test(pin))
    throw new EncryptionError(`${file} holds no key fingerprint (damaged): remove it to pin again`);
  return pin;
}

/** Writes `file` whole (util/new-file.ts), unless it exists already: then the pin there is the one. */
async function writeNew(file: string, text: string): Promise<void> {
  await writeNewFile(file, text, 0o600).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
}
