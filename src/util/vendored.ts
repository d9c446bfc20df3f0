// Owns loading a dependency that `npm run build` bundled into one file (dist/vendor/<name>.cjs,
// scripts/build-vendor.ts): from dist, the bundle; from the sources (tsx, tests) or when the bundle is
// missing, the package itself. Same code either way; the bundle only loads faster (one file instead of
// dozens). A caller asks once, where it needs the dependency, not at import time.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const loaded = new Map<string, unknown>();

/**
 * Name → the package bundled under it (scripts/build-vendor.ts builds one file for each), or the packages
 * bundled together (one file holding each one's exports: they share one copy of the modules they have
 * in common, so an error class of one is the class the others throw).
 */
export const VENDORED = {
  yaml: 'yaml',
  commander: '@commander-js/extra-typings',
  zod: 'zod',
  // the NATS client: 4 packages, ~90 files, ~68 ms to load from node_modules, ~38 ms as one bundle
  nats: ['@nats-io/transport-node', '@nats-io/jetstream', '@nats-io/kv', '@nats-io/obj'],
} as const;

/**
 * The bundles that hold only some of their package's exports (the others, and every module only they
 * reach, are left out of the file): name → those exports. The package itself, loaded when there is no
 * bundle, has them too.
 */
export const VENDORED_EXPORTS: Partial<Record<keyof typeof VENDORED, readonly string[]>> = {
  // util/zod.ts: what the manifests and the HTTP bodies are checked with; not zod's 64 locales
  zod: [
    'array',
    'boolean',
    'enum',
    'literal',
    'looseObject',
    'number',
    'object',
    'record',
    'strictObject',
    'string',
    'unknown',
  ],
};

/** The dependency bundled under `name` (VENDORED), or its package when there is no bundle. */
export function vendored<T>(name: keyof typeof VENDORED): T {
  let m = loaded.get(name);
  if (m === undefined) {
    try {
      m = require(`../../vendor/${name}.cjs`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
      const pkg: string | readonly string[] = VENDORED[name];
      m = typeof pkg === 'string' ? require(pkg) : Object.assign({}, ...pkg.map((p) => require(p)));
    }
    loaded.set(name, m);
  }
  return m as T;
}
