// Owns where a live agent's memory is: the PathResolver interface (memdir, SQLite dir, state dir per
// agent and tenant) and its default, the original's layout (§1.7): `<memdir_root>/<agent>` and
// `<sqlite_root>/<agent>`, tenant ignored; state files live beside the databases; and the guard that
// keeps an agent's directories off the snapshot store's own.

import { join, resolve } from 'node:path';
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

/**
 * Refuses (INVALID_INPUT) an agent whose memdir, database or state directory is one of the snapshot
 * store's own directories, lies inside one, or holds the state root: with the default roots (all the
 * state root), agents named `tenants`, `repository`, `repository-keys` or `cache` were the store
 * itself, so a snapshot took every bundle as memory files and a restore would have moved the store away.
 */
export class StoreGuardResolver implements PathResolver {
  private readonly stateRoot: string;

  constructor(
    private readonly inner: PathResolver,
    stateRoot: string,
  ) {
    this.stateRoot = resolve(stateRoot);
  }

  private checked(what: string, agentId: string, path: string): string {
    const p = resolve(path);
    const store = STORE_DIRS.map((d) => join(this.stateRoot, d)).find((d) => isWithin(d, p));
    if (store !== undefined || isWithin(p, this.stateRoot))
      throw new InvalidInputError(
        `agent ${agentId}: its ${what} ${p} ${store !== undefined ? `is the snapshot store's own ${store}` : `holds the state root ${this.stateRoot}`}; choose another agent id, or other roots (--memdir-root, --sqlite-root)`,
      );
    return path;
  }

  memdir(agentId: string, tenant: string): string {
    return this.checked('memdir', agentId, this.inner.memdir(agentId, tenant));
  }

  sqliteDir(agentId: string, tenant: string): string {
    return this.checked('database directory', agentId, this.inner.sqliteDir(agentId, tenant));
  }

  stateDir(agentId: string, tenant: string): string {
    return this.checked('state directory', agentId, this.inner.stateDir(agentId, tenant));
  }
}
