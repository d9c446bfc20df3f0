// Owns reading a small file that must be a regular file (a bundle's `.meta.json` sidecar, `.sha256`
// sibling and `.pin` marker: files of a store, which anyone who can write the store directory can
// replace): opened once without waiting (O_NONBLOCK: a FIFO opens at once and is never waited on), and
// read only when that descriptor is a regular file of at most the bound. Anything else is `unusable`
// with the reason, which the caller reports as it reports an unreadable file (stop 48: a FIFO `.pin` or
// `.sha256` made `list` and `verify` wait forever, a `.sha256` symlinked to /dev/zero grew verify to
// 611 MB). Synchronous: these files are tiny, and list reads thousands of them. node:fs only.

import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

export type RegularFileRead =
  | { status: 'absent' }
  | { status: 'ok'; bytes: Buffer }
  | { status: 'unusable'; reason: string };

/** The bytes of the regular file `path` if it is one of at most `maxBytes`; `absent` when there is none. */
export function readRegularFileSync(path: string, maxBytes: number): RegularFileRead {
  const unusable = (reason: string) => ({ status: 'unusable' as const, reason });
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { status: 'absent' };
    return unusable(`cannot be opened (${code ?? 'error'})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return unusable('not a regular file');
    if (st.size > maxBytes) return unusable(`larger than ${maxBytes} bytes`);
    // (one byte past the size: a file growing while it is read is bounded too)
    const buf = Buffer.alloc(Math.min(st.size, maxBytes) + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, n);
      if (got === 0) break;
      n += got;
      if (n > maxBytes) return unusable(`larger than ${maxBytes} bytes`);
      if (n === buf.length) break;
    }
    return { status: 'ok', bytes: buf.subarray(0, n) };
  } catch (err) {
    return unusable(`cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  } finally {
    closeSync(fd);
  }
}
