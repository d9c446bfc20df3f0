// Owns where a live agent's memory is: the PathResolver interface (memdir, SQLite dir, state dir per
// agent and tenant) and its default, the original's layout (§1.7): `<memdir_root>/<agent>` and
// `<sqlite_root>/<agent>`, tenant ignored; state files live beside the databases.

import { join, resolve } from 'node:path';

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
