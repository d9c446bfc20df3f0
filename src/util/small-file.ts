// Owns reading a file that is small by nature (the config file, a signing key, an age identity, a list
// of trusted keys, a NATS .creds file) whole and bounded (stop 47): at most the bound is read, whatever
// the file is, so a device that never ends (`--config /dev/zero` grew to 4 GB) is refused once past it.
// A regular file, a pipe (`--config <(…)`, /dev/stdin: opened once, read as it comes, waiting for its
// writer as any reader of a pipe does) and a character device (/dev/null) are read; a directory, a
// socket or a block device, and a file over the bound, are refused, and the caller throws its own typed
// error with the reason. Symlinks are followed: a key mounted as a symlink (a Kubernetes secret) is an
// ordinary way to hand one over.
// Also checks that text is UTF-8, naming the first line that is not (a Latin-1 `é` read as U+FFFD
// moved the store elsewhere). A pipe or device is read once per process: later reads get its bytes again.
// node:fs only.

import { isUtf8 } from 'node:buffer';
import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { resolve } from 'node:path';

/** The most a config file may hold. */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;
/** The most a key, identity, trusted-keys or .creds file may hold (a key is under 1 KiB). */
export const MAX_KEY_FILE_BYTES = 64 * 1024;

/**
 * Why a small file was not read. `system`: the system's error opening or reading it (`ENOENT: no such
 * file or directory, …`, for `cannot read <file>: <reason>`); else `reason` follows the file's name
 * (`<file> is a FIFO, not a regular file: not read`). The caller throws its own typed error.
 */
export class SmallFileProblem extends Error {
  constructor(
    readonly reason: string,
    readonly system: boolean,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
    this.name = 'SmallFileProblem';
  }
  /** The caller's message: `cannot read <name> <path>: <reason>` or `<name> <path> <reason>`. */
  describe(name: string, path: string): string {
    return this.system ? `cannot read ${name} ${path}: ${this.reason}` : `${name} ${path} ${this.reason}`;
  }
}

const size = (n: number): string =>
  n % 1024 === 0 && n >= 1024
    ? n % (1024 * 1024) === 0
      ? `${n / 1024 / 1024} MiB`
      : `${n / 1024} KiB`
    : `${n} bytes`;

/** What kind of file that is not a regular file `st` is, for the refusal. */
function kindOf(st: ReturnType<typeof fstatSync>): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * What each pipe or character device read so far held, by its absolute path: a pipe can be read once
 * (its writer wrote it once), and a command may need the file more than once (the identity for each
 * snapshot it resolves and reads, the event publisher's credentials at each connection it makes). A
 * later read of that path gets the same bytes instead of waiting for a writer that has gone, or
 * reading nothing (stop 48). Regular files are read again each time (a key rotated under a daemon).
 */
const pipesRead = new Map<string, Buffer>();

/**
 * The bytes of the file `path` (a regular file, a pipe or a character device), at most `maxBytes` of
 * them; else SmallFileProblem with the
 * reason (the system's message when it cannot be opened: `ENOENT: no such file or directory, …`).
 * `what` names the file's kind in the reason (`a config file`).
 */
export function readSmallFile(path: string, maxBytes: number, what: string): Buffer {
  const kept = pipesRead.get(resolve(path));
  if (kept) return Buffer.from(kept);
  const refused = (st: ReturnType<typeof fstatSync>): SmallFileProblem | undefined =>
    st.isFile() || st.isFIFO() || st.isCharacterDevice()
      ? undefined
      : new SmallFileProblem(`is ${kindOf(st)}, not a regular file, a pipe or a device: not read`, false);
  let fd: number;
  try {
    // What it is, before it is opened: a pipe is opened once, to be read. (Opened first without waiting
    // to see what it was, then again to read, a pipe let its writer write to that first reader and go:
    // the second open then waited forever, or the writer was killed by SIGPIPE; stop 48.)
    const problem = refused(statSync(path));
    if (problem) throw problem;
    fd = openSync(path, constants.O_RDONLY);
  } catch (err) {
    if (err instanceof SmallFileProblem) throw err;
    throw new SmallFileProblem((err as Error).message, true, { cause: err });
  }
  try {
    // what was opened (the path may have been replaced since it was looked at)
    const st = fstatSync(fd);
    const problem = refused(st);
    if (problem) throw problem;
    if (st.isFile() && st.size > maxBytes)
      throw new SmallFileProblem(
        `is ${st.size} bytes, more than ${what} may hold (${size(maxBytes)}): not read`,
        false,
      );
    // (read to the end, one byte past the bound: a file growing while it is read is bounded too)
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > maxBytes)
        throw new SmallFileProblem(`holds more than ${what} may hold (${size(maxBytes)}): not read`, false);
    }
    const bytes = buf.subarray(0, n);
    if (!st.isFile()) pipesRead.set(resolve(path), Buffer.from(bytes));
    return bytes;
  } catch (err) {
    if (err instanceof SmallFileProblem) throw err;
    throw new SmallFileProblem((err as Error).message, true, { cause: err });
  } finally {
    closeSync(fd);
  }
}

/**
 * `bytes` as text when they are UTF-8 (a byte order mark is dropped); else SmallFileProblem naming the
 * first line (1-based) that is not.
 */
export function utf8Text(bytes: Buffer): string {
  if (!isUtf8(bytes)) {
    // (a newline byte never occurs inside a UTF-8 sequence: each line is valid or not on its own)
    let line = 1;
    let start = 0;
    for (;;) {
      const end = bytes.indexOf(0x0a, start);
      if (!isUtf8(bytes.subarray(start, end === -1 ? bytes.length : end)) || end === -1) break;
      line++;
      start = end + 1;
    }
    throw new SmallFileProblem(
      `is not UTF-8 at line ${line} (saved in Latin-1 or another legacy encoding?): not read`,
      false,
    );
  }
  const text = bytes.toString('utf8');
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** readSmallFile, then utf8Text. */
export function readSmallText(path: string, maxBytes: number, what: string): string {
  return utf8Text(readSmallFile(path, maxBytes, what));
}
