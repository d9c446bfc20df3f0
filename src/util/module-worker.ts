// Owns starting a worker thread whose body is a module of this package, beside the caller: the compiled
// module when running from dist/ (installed), the TypeScript source when running from source under tsx.
// Worker threads do not inherit tsx's loader hooks, so there the worker registers tsx itself first: its
// require hook, which starts in about a third of the time of its ESM loader (that one starts a thread of
// its own in every worker), and which every module of this package loads under.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { watchWorker } from './heap-settings.js';

/**
 * Starts the module `name` (no extension), a sibling of the caller's module `from` (its
 * `import.meta.url`), on a new worker thread.
 */
export function startModuleWorker(from: string, name: string, options: WorkerOptions): Worker {
  const fromSource = from.endsWith('.ts');
  const body = new URL(`./${name}${fromSource ? '.ts' : '.js'}`, from);
  if (!fromSource) return watchWorker(new Worker(body, options));
  const tsx = JSON.stringify(createRequire(import.meta.url).resolve('tsx/cjs/api'));
  const boot = `require(${tsx}).register(); require(${JSON.stringify(fileURLToPath(body))});`;
  return watchWorker(new Worker(boot, { ...options, eval: true }));
}
