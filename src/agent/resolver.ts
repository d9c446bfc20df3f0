// Owns where a live agent's memory is: the PathResolver interface (memdir, SQLite dir, state dir per
// agent and tenant) and its default, the original's layout (§1.7): `<memdir_root>/<agent>` and
// `<sqlite_root>/<agent>`, tenant ignored; state files live beside the databases; and the guard that
// keeps an agent's directories off the snapshot store's own and refuses roots whose real paths lie
// otherwise than as given (a symlink hiding an overlap).

import { realpathSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { InvalidInputError } from '../model/errors.js';
import { isWithin, STORE_DIRS } from '../store/paths.js';

export interface PathResolver {
  memdir(agentId: string, tenant: string): string;
  sqliteDir(agentId: string, tenant: string): string;
  stateDir(agentId: string, tenant: string): string;
}

export class DefaultPathResolver implements PathResolver {
  private readonly memdirRoot: string;
  private readonly sqliteRoot: string;
  private readonly stateRoot: string;

  constructor(memdirRoot: string, sqliteRoot: string, stateDirRoot: string = sqliteRoot) {
    this.memdirRoot = resolve(memdirRoot);
    this.sqliteRoot = resolve(sqliteRoot);
    this.stateRoot = resolve(stateDirRoot);
  }

  memdir(agentId: string): string {
    return join(this.memdirRoot, agentId);
  }

  sqliteDir(agentId: string): string {
    return join(this.sqliteRoot, agentId);
  }

  stateDir(agentId: string): string {
    return join(this.stateRoot, agentId);
  }
}

/** Wraps functions of (agent, tenant), like the original's ClosureResolver. */
export class ClosureResolver implements PathResolver {
  constructor(
    private readonly fns: {
      memdir: (agentId: string, tenant: string) => string;
      sqliteDir: (agentId: string, tenant: string) => string;
      stateDir?: (agentId: string, tenant: string) => string;
    },
  ) {}

  memdir(agentId: string, tenant: string): string {
    return this.fns.memdir(agentId, tenant);
  }

  sqliteDir(agentId: string, tenant: string): string {
    return this.fns.sqliteDir(agentId, tenant);
  }

  stateDir(agentId: string, tenant: string): string {
    return (this.fns.stateDir ?? this.fns.sqliteDir)(agentId, tenant);
  }
}

/** How two directories lie: `a` is `b`, `a` is inside `b`, `a` holds `b`, or neither. */
type Placement = 'same' | 'inside' | 'holds' | 'apart';

function placement(a: string, b: string): Placement {
  if (a === b) return 'same';
  if (isWithin(b, a)) return 'inside';
  if (isWithin(a, b)) return 'holds';
  return 'apart';
}

const PLACED: Record<Placement, string> = {
  same: 'is',
  inside: 'is inside',
  holds: 'holds',
  apart: 'is apart from',
};

/**
 * `path` (absolute) with every symlink and `..` resolved as the kernel resolves them: the real path of
 * its longest existing ancestor, then the rest as written (a directory not made yet).
 */
export function realPathOf(path: string): string {
  const rest: string[] = [];
  for (let p = path; ; p = dirname(p)) {
    try {
      return join(realpathSync.native(p), ...rest.reverse());
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || dirname(p) === p) return resolve(path);
      rest.push(basename(p));
    }
  }
}

/**
 * Refuses (INVALID_INPUT) an agent whose memdir, database or state directory is one of the snapshot
 * store's own directories, lies inside one, or holds the state root: with the default roots (all the
 * state root), agents named `tenants`, `repository`, `repository-keys` or `cache` were the store
 * itself, so a snapshot took every bundle as memory files and a restore would have moved the store away.
 * Judged on the paths as given and on their real paths (stop 47: a state root reached through a
 * symlink into the memdir put the store's own packs in the snapshot). And refuses an agent whose
 * database or state directory lies otherwise against its memdir by their real paths than as given (a
 * symlink or `..` hides it): the layout code places them by the paths as given — a database directory
 * inside the memdir is left out of its walk and restored within its swap (the default layout), one
 * apart is swapped on its own — so a database directory reached through a symlink into the memdir was
 * captured raw as memory files, and a restore put those copies over the databases it had restored.
 * One check for every surface: every path of an agent goes through here.
 */
export class StoreGuardResolver implements PathResolver {
  private readonly stateRoot: string;

  constructor(
    private readonly inner: PathResolver,
    stateRoot: string,
  ) {
    this.stateRoot = resolve(stateRoot);
  }

  private refuse(agentId: string, text: string): never {
    throw new InvalidInputError(
      `agent ${agentId}: ${text}; choose another agent id, or other roots (--memdir-root, --sqlite-root, --state-root; memory.snapshot.memdir_root, sqlite_root, root), given by their real paths`,
    );
  }

  /** The store check of one directory, on the path as given (`p`) and on the real paths. */
  private storeCheck(what: string, agentId: string, p: string, real: string, realRoot: string): void {
    const storeOf = (dir: string, root: string) =>
      STORE_DIRS.map((d) => join(root, d)).find((d) => isWithin(d, dir));
    const given = storeOf(p, this.stateRoot);
    if (given !== undefined || isWithin(p, this.stateRoot))
      this.refuse(
        agentId,
        `its ${what} ${p} ${given !== undefined ? `is the snapshot store's own ${given}` : `holds the state root ${this.stateRoot}`}`,
      );
    const store = storeOf(real, realRoot);
    if (store !== undefined || isWithin(real, realRoot))
      this.refuse(
        agentId,
        `its ${what} ${p} ${store !== undefined ? "is the snapshot store's own" : 'holds the state root'} ${this.stateRoot}${store !== undefined ? ` ${store.slice(realRoot.length + 1)}` : ''} by their real paths (${real} ${store !== undefined ? `is inside ${store}` : `holds ${realRoot}`}: a symlink or \`..\` hides it)`,
      );
  }

  /** Every check of the agent's directories (see the class). */
  private checkAgent(agentId: string, tenant: string): void {
    const dirs = [
      ['memdir', this.inner.memdir(agentId, tenant)],
      ['database directory', this.inner.sqliteDir(agentId, tenant)],
      ['state directory', this.inner.stateDir(agentId, tenant)],
    ] as const;
    const realRoot = realPathOf(this.stateRoot);
    const placed = dirs.map(([what, path]) => {
      const p = resolve(path);
      const real = realPathOf(p);
      this.storeCheck(what, agentId, p, real, realRoot);
      return { what, p, real };
    });
    const [memdir, ...others] = placed;
    for (const o of others) {
      const given = placement(o.p, memdir!.p);
      const real = placement(o.real, memdir!.real);
      if (given !== real)
        this.refuse(
          agentId,
          `its ${o.what} ${o.p} ${PLACED[given]} its memdir ${memdir!.p} as given, but by their real paths ${o.real} ${PLACED[real]} ${memdir!.real} (a symlink or \`..\` hides where one is: a snapshot would take the wrong files as memory files, a restore would write one over the other)`,
        );
    }
  }

  memdir(agentId: string, tenant: string): string {
    this.checkAgent(agentId, tenant);
    return this.inner.memdir(agentId, tenant);
  }

  sqliteDir(agentId: string, tenant: string): string {
    this.checkAgent(agentId, tenant);
    return this.inner.sqliteDir(agentId, tenant);
  }

  stateDir(agentId: string, tenant: string): string {
    this.checkAgent(agentId, tenant);
    return this.inner.stateDir(agentId, tenant);
  }
}
