// Memory file names that sort differently by UTF-8 bytes, code points and UTF-16 units (and one with a
// space, one a directory's prefix): planted by the two independent readers' agents, which must order
// and name them as the docs say.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const NAMES = [
  'a-b.md',
  'Z.md',
  'é.md',
  '\u{1F600}.md',
  '\uFF5E.md',
  'sub/x.md',
  'sub-x.md',
  'with space.md',
];

/** Writes each name under `<memdir>/notes/` (uncommitted), its content a heading with the name. */
export function plantUnusualNames(memdir: string): void {
  for (const name of NAMES) {
    mkdirSync(join(memdir, 'notes', ...name.split('/').slice(0, -1)), { recursive: true });
    writeFileSync(join(memdir, 'notes', name), `# ${name}\n`);
  }
}
