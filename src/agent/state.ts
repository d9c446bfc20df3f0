// Owns the agent's small state (extract cursor, last dream run): the StateProvider interface through
// which snapshot captures it and restore replays it, and the default provider that keeps each value as
// a JSON file (`extract_cursor.json`, `dream_run.json`) in the agent's state directory.

import { mkdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { jsonSyntaxProblem } from '../format/json.js';
import { StateProviderError } from '../model/errors.js';
import { STATE_KEYS, type StateKey } from '../model/types.js';
import { writeFileAtomic } from '../store/atomic.js';
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
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StateProviderError(`reading ${file}: ${(err as Error).message}`, { cause: err });
    }
    try {
      return JSON.parse(text) as StateValue;
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
      await unlink(file).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      return;
    }
    await mkdir(this.resolver.stateDir(agentId, tenant), { recursive: true });
    await writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`, 0o644);
  }
}

/** The files a provider keeps the state in (a JsonFileStateProvider's; none known for another). */
export function stateFilePaths(provider: StateProvider, agentId: string, tenant: string): string[] {
  return provider instanceof JsonFileStateProvider
    ? STATE_KEYS.map((key) => provider.path(key, agentId, tenant))
    : [];
}
