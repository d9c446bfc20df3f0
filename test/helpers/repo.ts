// The checkout these tests belong to: the nearest directory above this module holding package.json.
// A test's modules run either as TypeScript under tsx (test/helpers/) or as their transforms under
// dist/test-build/ (helpers/transform.ts): both find the same checkout.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function checkoutOf(file: string): string {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${file}`);
  }
}

export const REPO = checkoutOf(fileURLToPath(import.meta.url));
