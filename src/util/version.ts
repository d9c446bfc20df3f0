// Owns the versions stamped into manifests: this package's own (read from its package.json, found by
// walking up from this module, which works from src/ and from dist/; its description too) and the
// tools that made a bundle.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackage(): { version?: string; description?: string } {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
        description?: string;
      };
      if (pkg.name === 'nexo-memory-snapshot' && pkg.version) return pkg;
    } catch {
      // keep walking up
    }
    dir = dirname(dir);
  }
  return {};
}

const pkg = findPackage();
export const PACKAGE_VERSION = pkg.version ?? '0.0.0';
/** The package's one-line description (the CLI's top-level description, the README's first line). */
export const PACKAGE_DESCRIPTION = pkg.description ?? "Snapshots of an AI agent's memory";

let tools: Promise<Record<string, string>> | undefined;

/** `tool_versions` for a manifest; git2/sqlx keep the original's keys and say they are not used. */
export function toolVersions(): Promise<Record<string, string>> {
  tools ??= (async () => {
    const require = createRequire(import.meta.url);
    const sqlite = require('better-sqlite3/package.json') as { version: string };
    const zstd = require('zstd-napi/package.json') as { version: string };
    return {
      nexo_version: PACKAGE_VERSION,
      git2: 'n/a',
      sqlx: 'n/a',
      // imported here: git.js loads node:child_process, which the CLI's start-up (`--version`, `list`) never needs
      git: await import('../git/git.js').then(({ gitVersion }) => gitVersion()).catch(() => 'unknown'),
      better_sqlite3: sqlite.version,
      zstd_napi: zstd.version,
      node: process.version,
    };
  })();
  return tools;
}
