// Owns the web console's static files: the built bundle under `<package>/dist/console/` (made by
// `npm run build`, shipped in the npm package), read once when the daemon starts. Only those files
// are served — a name that is not one of them is a 404, never a path on disk — each with its content
// type; `/` is the console's index.html.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

export interface ConsoleAsset {
  bytes: Buffer;
  contentType: string;
}

/** The package's root: the nearest directory above this module that has a package.json. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('nexo-memory: package.json not found above the server module');
    dir = up;
  }
  return dir;
}

export const CONSOLE_DIR = join(packageRoot(), 'dist', 'console');

/** The built console's files by name (empty when the console was not built). */
export function loadConsoleAssets(dir: string = CONSOLE_DIR): Map<string, ConsoleAsset> {
  const out = new Map<string, ConsoleAsset>();
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const type = TYPES[extname(e.name)];
    if (!e.isFile() || !type || !/^[A-Za-z0-9._-]+$/.test(e.name)) continue;
    out.set(e.name, { bytes: readFileSync(join(dir, e.name)), contentType: type });
  }
  return out;
}
