// Owns turning on Node's on-disk compile cache for the CLI process (Node 22.1 and later; on Node 20 it
// does nothing): V8 keeps the compiled code of each module it loads in a directory and the next run
// reads it back instead of parsing and compiling the module again. bin/nexo-memory.js calls
// `enableCompileCache` before it loads the CLI, so every module of the command run is cached. Measured (docs/operations.md,
// "stop 39"): `list` of an empty store on Node 22, 233 → 210 M instructions, about a fifth of what the
// CLI adds to `node -e 0`; the gain is in every command's start-up, which is what a runtime calling the
// CLI before each action waits for.
//
// The cache holds code that V8 runs, so its directory must be writable by this user alone: a directory
// another user could write to would let them run code as whoever runs the CLI. The directory is
// `$XDG_CACHE_HOME/nexo-memory/compile-cache` (`~/.cache/…` without it), made with mode 0700, and used
// only when it and its parent are real directories (not symbolic links) owned by this user that no one
// else may write to, in a base directory no one else may write to unless it is sticky (as /tmp).
// Otherwise, or when anything about it fails, the CLI runs without it, silently: it is only speed.
// Node's own switches keep their meaning: NODE_COMPILE_CACHE names another directory (Node turns the
// cache on itself before this runs), NODE_DISABLE_COMPILE_CACHE=1 turns it off.

import { lstatSync, mkdirSync, type Stats } from 'node:fs';
import module from 'node:module';
import { join } from 'node:path';

/** `module.enableCompileCache` where this Node has it (22.1+; @types/node 20 does not declare it). */
type EnableCompileCache = (directory?: string) => unknown;

/** Nobody but the owner may write: not group- or world-writable. */
const ownedAlone = (st: Stats, uid: number): boolean =>
  st.isDirectory() && !st.isSymbolicLink() && st.uid === uid && (st.mode & 0o022) === 0;

/**
 * The cache directory to use for this process, or undefined when there is none this user alone can
 * write to. Creates it (and `nexo-memory/` above it) with mode 0700 when missing.
 */
export function compileCacheDirectory(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const uid = process.getuid?.();
  if (uid === undefined) return undefined;
  const base = env.XDG_CACHE_HOME?.startsWith('/')
    ? env.XDG_CACHE_HOME
    : env.HOME?.startsWith('/')
      ? join(env.HOME, '.cache')
      : undefined;
  if (base === undefined) return undefined;
  const own = join(base, 'nexo-memory');
  const dir = join(own, 'compile-cache');
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const baseStat = lstatSync(base);
    // a base others may write to must be sticky (they cannot rename what is ours inside it)
    if (!baseStat.isDirectory() || ((baseStat.mode & 0o022) !== 0 && (baseStat.mode & 0o1000) === 0))
      return undefined;
    if (!ownedAlone(lstatSync(own), uid) || !ownedAlone(lstatSync(dir), uid)) return undefined;
    return dir;
  } catch {
    return undefined;
  }
}

/** Turns the compile cache on for this process when Node has it and the user has not set it either way. */
export function enableCompileCache(env: NodeJS.ProcessEnv = process.env): void {
  const enable = (module as unknown as { enableCompileCache?: EnableCompileCache }).enableCompileCache;
  if (typeof enable !== 'function' || env.NODE_COMPILE_CACHE || env.NODE_DISABLE_COMPILE_CACHE) return;
  const dir = compileCacheDirectory(env);
  if (dir === undefined) return;
  try {
    enable(dir);
  } catch {
    // only speed: the command runs as it would without it
  }
}
