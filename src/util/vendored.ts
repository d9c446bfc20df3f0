// Owns loading a dependency that `npm run build` bundled into one file (dist/vendor/<name>.cjs,
// scripts/build-vendor.ts): from dist, the bundle; from the sources (tsx, tests) or when the bundle is
// missing, the package itself. Same code either way; the bundle only loads faster (one file instead of
// dozens). A caller asks once, where it needs the dependency, not at import time.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const loaded = new Map<string, unknown>();

/** The dependency `name` (a package name bundled by scripts/build-vendor.ts under the same name). */
export function vendored<T>(name: 'yaml'): T {
  let m = loaded.get(name);
  if (m === undefined) {
    try {
      m = require(`../../vendor/${name}.cjs`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
      m = require(name);
    }
    loaded.set(name, m);
  }
  return m as T;
}
