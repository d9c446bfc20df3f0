// Owns the ssh-style check of a secret key file's permissions: an age identity that group or others can
// read is reported (a warning naming the file and the `chmod 600` that fixes it), never refused
// (docs/decisions.md, "Format"). node:fs only, so the CLI checks a file without loading the crypto.

import { statSync } from 'node:fs';

/** A path as a shell takes it back: bare when it is plain, else in single quotes. */
const shellWord = (p: string): string => (/^[\w./~+:@%-]+$/.test(p) ? p : `'${p.replaceAll("'", `'\\''`)}'`);

/**
 * The warning for a secret key file that group or others can read, or undefined: not readable by
 * them, not there or not readable at all (reading it reports that), or a platform without these modes.
 */
export function looseKeyFileWarning(path: string, what = 'identity file'): string | undefined {
  if (process.platform === 'win32') return undefined;
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch {
    return undefined;
  }
  const readers = [mode & 0o040 ? 'group' : '', mode & 0o004 ? 'others' : ''].filter(Boolean);
  if (readers.length === 0) return undefined;
  const octal = (mode & 0o777).toString(8).padStart(4, '0');
  return (
    `${what} ${path} is readable by ${readers.join(' and ')} (mode ${octal}): whoever can read it can ` +
    `decrypt your encrypted snapshots; make it private with \`chmod 600 ${shellWord(path)}\``
  );
}
