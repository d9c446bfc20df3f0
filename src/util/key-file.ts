// Owns the ssh-style check of a secret key file's permissions: an age identity or an ed25519 signing
// key that group or others can read is reported (a warning naming the file, who can read it and the
// `chmod 600` that fixes it), never refused (docs/decisions.md, "Format"). node:fs only, so the CLI
// checks a file without loading the crypto.

import { statSync } from 'node:fs';
import { MAX_KEY_FILE_BYTES, readSmallFile } from './small-file.js';

/** A path as a shell takes it back: bare when it is plain, else in single quotes. */
const shellWord = (p: string): string => (/^[\w./~+:@%-]+$/.test(p) ? p : `'${p.replaceAll("'", `'\\''`)}'`);

/** The secret key files checked: what the warning calls each and what a reader of it can do. */
export type SecretKeyKind = 'identity' | 'signing';

const KINDS: Record<SecretKeyKind, { name: string; harm: string }> = {
  identity: { name: 'identity file', harm: 'decrypt your encrypted snapshots' },
  signing: { name: 'signing key file', harm: 'sign snapshots as you' },
};

/**
 * Whether the file may hold a secret signing key (`NEXO-SIGN-SECRET-KEY-1…` or a PEM private key): a
 * public key given by mistake (the `.pub` keygen writes beside the key, 0644) is not warned of as
 * readable, its loader refuses it.
 */
function holdsSigningSecret(path: string): boolean {
  // (a regular file, bounded: its loader refuses what this cannot read)
  let text: string;
  try {
    text = readSmallFile(path, MAX_KEY_FILE_BYTES, 'a key file').toString('utf8');
  } catch {
    return false;
  }
  return /NEXO-SIGN-SECRET-KEY-1|PRIVATE KEY-----/i.test(text);
}

/**
 * The warning for a secret key file that group or others can read, or undefined: not readable by
 * them, not there or not readable at all (reading it reports that), a signing key file that holds no
 * secret key, or a platform without these modes.
 */
export function looseKeyFileWarning(path: string, kind: SecretKeyKind = 'identity'): string | undefined {
  if (process.platform === 'win32') return undefined;
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  const mode = st.mode;
  const readers = [mode & 0o040 ? 'group' : '', mode & 0o004 ? 'others' : ''].filter(Boolean);
  if (readers.length === 0) return undefined;
  // Only a regular file is looked into: a pipe is read by its loader, once (read here first, it left
  // the loader waiting for a writer that had gone, and `list` waited on a pipe it never needed: stop
  // 48); a pipe others can open is warned of as a key they can read.
  if (kind === 'signing' && st.isFile() && !holdsSigningSecret(path)) return undefined;
  const octal = (mode & 0o777).toString(8).padStart(4, '0');
  const { name, harm } = KINDS[kind];
  return (
    `${name} ${path} is readable by ${readers.join(' and ')} (mode ${octal}): whoever can read it can ` +
    `${harm}; make it private with \`chmod 600 ${shellWord(path)}\``
  );
}
