// Owns the agent's small state (extract cursor, last dream run): the StateProvider interface through
// which snapshot captures it and restore replays it, and the default provider that keeps each value as
// a JSON file (`extract_cursor.json`, `dream_run.json`) in the agent's state directory. Whoever writes
// that directory (the agent; by default it is the memdir) must not make a snapshot read another file: a
// state file is opened once, no symlink followed, never blocking, and read only if that descriptor is a
// regular file at the directory's real path + its name (docs/decisions.md, stop 46).

import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, realpathSync } from 'node:fs';
import { chmod, chown, lstat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { jsonSyntaxProblem, keepingNumbers } from '../format/json.js';
import { jsonText } from '../format/json-number.js';
import { StateProviderError } from '../model/errors.js';
import { STATE_KEYS, type StateKey } from '../model/types.js';
import { writeFileAtomic } from '../store/atomic.js';
import { procFdWorks, procPathIs } from '../util/fd-path.js';
import { makeDirs } from '../util/make-dirs.js';
import { fsyncDir } from '../util/new-file.js';
import type { PathResolver } from './resolver.js';

/** A JSON value, or undefined when the agent has none. */
export type StateValue = unknown;

export interface StateProvider {
  /** Returns the current value, or undefined when there is none. */
  capture(key: StateKey, agentId: string, tenant: string): Promise<StateValue | undefined>;
  /** Makes `value` current; undefined removes the value. */
  restore(key: StateKey, agentId: string, tenant: string, value: StateValue | undefined): Promise<void>;
}

/** Captures nothing and restores nothing (the original's default). */
export class NoopStateProvider implements StateProvider {
  async capture(): Promise<undefined> {
    return undefined;
  }
  async restore(): Promise<void> {}
}

export const stateFileName = (key: StateKey): string => `${key}.json`;

/** The default: `<stateDir>/extract_cursor.json` and `<stateDir>/dream_run.json`. */
export class JsonFileStateProvider implements StateProvider {
  constructor(private readonly resolver: PathResolver) {}

  path(key: StateKey, agentId: string, tenant: string): string {
    return join(this.resolver.stateDir(agentId, tenant), stateFileName(key));
  }

  async capture(key: StateKey, agentId: string, tenant: string): Promise<StateValue | undefined> {
    const file = this.path(key, agentId, tenant);
    const text = readOwnFile(file);
    if (text === undefined) return undefined;
    try {
      // a number JSON.parse would round (a cursor beyond 2^53) is kept as its text (JsonNumber)
      return keepingNumbers(text, JSON.parse(text)) as StateValue;
    } catch (err) {
      // where, not what: JSON.parse's message quotes the file's first characters, which may be a secret
      // (and the message reaches the API's and MCP's clients)
      throw new StateProviderError(`${file} is not valid JSON: ${jsonSyntaxProblem(text)}`, { cause: err });
    }
  }

  async restore(
    key: StateKey,
    agentId: string,
    tenant: string,
    value: StateValue | undefined,
  ): Promise<void> {
    const file = this.path(key, agentId, tenant);
    if (value === undefined) {
      const removed = await unlink(file).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
          return false;
        },
      );
      // durable before the journal that records it (a rollback's too): stop 63
      if (removed) await fsyncDir(dirname(file));
      return;
    }
    await makeDirs(this.resolver.stateDir(agentId, tenant));
    // the mode of the file it replaces, if any (a state file kept private stays private: stop 61 review)
    const was = await lstat(file).catch(() => undefined);
    const mode = was?.isFile() ? was.mode & 0o777 : 0o644;
    await writeFileAtomic(file, `${jsonText(value, 2)}\n`, mode);
    if (!was?.isFile()) return;
    await chmod(file, mode); // exactly (the create's mode passed the umask)
    if (process.getuid?.() === 0) await chown(file, was.uid, was.gid); // and its owner and group, as root
  }
}

/** The files a provider keeps the state in (a JsonFileStateProvider's; none known for another). */
export function stateFilePaths(provider: StateProvider, agentId: string, tenant: string): string[] {
  return provider instanceof JsonFileStateProvider
    ? STATE_KEYS.map((key) => provider.path(key, agentId, tenant))
    : [];
}

/**
 * The text of the state file `file`, or undefined when there is none: opened once with
 * O_NOFOLLOW|O_NONBLOCK (a symlink is ELOOP; a FIFO opens at once), and read only when that descriptor
 * is a regular file at the real path of its directory + its name (the kernel's path of the descriptor,
 * /proc/self/fd; without /proc, the path's dev/ino after the open). Else STATE, naming the file.
 */
function readOwnFile(file: string): string | undefined {
  const refuse = (why: string) =>
    new StateProviderError(`${file} ${why}: not read (a state file must be a regular file, not a symlink)`);
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP') throw refuse('is a symlink');
    if (code === 'ENXIO' || code === 'EOPNOTSUPP') throw refuse('is not a regular file'); // a socket
    throw new StateProviderError(`reading ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw refuse('is not a regular file');
    const expected = join(realpathSync(dirname(file)), basename(file));
    const inPlace = procFdWorks()
      ? procPathIs(fd, expected) // (removed since: as opened)
      : (() => {
          const l = lstatSync(expected);
          return l.dev === st.dev && l.ino === st.ino;
        })();
    if (!inPlace) throw refuse('was moved or replaced while it was opened');
    return readFileSync(fd, 'utf8');
  } catch (err) {
    if (err instanceof StateProviderError) throw err;
    throw new StateProviderError(`reading ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    closeSync(fd);
  }
}
