// Owns loading zod, the schema library the manifests (format/manifest.ts, repository/manifest.ts) and
// the HTTP API's request bodies (server/routes.ts) are checked with: from its one-file bundle
// (dist/vendor/zod.cjs, util/vendored.ts) when built, else the package. The bundle holds only the
// schema builders used here (VENDORED_EXPORTS), with zod's English messages and without its 64 other
// locales: it loads in ~15 ms where `import { z } from 'zod'` (~100 modules) took ~85 ms, and every
// verify and restore reads a manifest. Same code, same messages. It is loaded when a schema is first
// built (`zod()`), not when this module is imported: a bundle snapshot writes a manifest and never
// parses one, and loads no zod. The MCP tool keeps the package itself: its SDK reads the tool's
// schemas with its own copy of zod.

import type * as Zod from 'zod';
import { vendored } from './vendored.js';

type Builders = Pick<
  typeof Zod,
  | 'array'
  | 'boolean'
  | 'enum'
  | 'literal'
  | 'looseObject'
  | 'number'
  | 'object'
  | 'record'
  | 'strictObject'
  | 'string'
  | 'unknown'
>;

/** zod's schema builders (`z.string()`, `z.strictObject({…})`, …), one copy per process, loaded on first call. */
export const zod = (): Builders => vendored<Builders>('zod');

/** zod's types under the same name: `z.infer<typeof schema>`, `z.ZodType`. */
export declare namespace z {
  export type infer<T> = Zod.infer<T>;
  export type ZodType = Zod.ZodType;
}
