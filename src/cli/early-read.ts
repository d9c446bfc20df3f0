// Owns recognising, from the command line alone, the files a command that reads a whole bundle may
// read (`verify`, `restore`, `import`): main.ts hands them to prepareBundleRead before it loads the
// program, so the decompression thread (format/zstd-worker.ts, ~45 ms to start on an idle machine and
// several times that while the program loads beside it) is up when the first bytes are wanted, not
// started once the command's options are parsed. Only files large enough to be read on that thread
// start it, so an argument that is an id, a key or a config costs a stat, and nothing more is loaded.

import { statSync } from 'node:fs';
import { OFF_THREAD_MIN_BYTES } from '../format/zstd-ring.js';

/** The commands that read a bundle file they are given on the command line. */
const READERS = new Set(['verify', 'restore', 'import']);

/**
 * The arguments after such a command that could name its bundle (every value that is not an option;
 * `--opt=value` gives its value): more than the bundle, never less. Empty for any other command.
 */
export function bundleCandidates(args: readonly string[]): string[] {
  const at = args.findIndex((a) => !a.startsWith('-'));
  if (at < 0 || !READERS.has(args[at]!)) return [];
  return args
    .slice(at + 1)
    .map((a) => (a.startsWith('--') && a.includes('=') ? a.slice(a.indexOf('=') + 1) : a))
    .filter((a) => a !== '' && !a.startsWith('-'));
}

/** The first of `candidates` that is a file read on the decompression thread, if any. */
export function bundleReadEarly(candidates: readonly string[]): string | undefined {
  return candidates.find((path) => {
    try {
      const st = statSync(path);
      return st.isFile() && st.size >= OFF_THREAD_MIN_BYTES;
    } catch {
      return false;
    }
  });
}
