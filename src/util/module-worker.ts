// Owns starting a worker thread whose body is a module of this package, beside the caller, and naming a
// package module a worker loads later: the compiled module when running from dist/ (installed), the
// TypeScript source when running from source under tsx. Worker threads do not inherit tsx's loader hooks,
// so there the worker registers tsx itself first: its require hook, which starts in about a third of the
// time of its ESM loader (that one starts a thread of its own in every worker), and which every module of
// this package loads under.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { watchWorker } from './heap-settings.js';
import { startProgramHost } from './program-host.js';

/** A module of this package as a worker thread loads it: its file, and tsx's require hook for source. */
export interface PackageModule {
  path: string;
  /** tsx's CommonJS register API, to register before requiring `path` (TypeScript source only). */
  tsx?: string;
}

/** The module `name` (relative, no extension) beside the caller's module `from` (its `import.meta.url`). */
export function packageModule(from: string, name: string): PackageModule {
  const fromSource = from.endsWith('.ts');
  const path = fileURLToPath(new URL(`./${name}${fromSource ? '.ts' : '.js'}`, from));
  return fromSource ? { path, tsx: createRequire(import.meta.url).resolve('tsx/cjs/api') } : { path };
}

/** CommonJS that loads TypeScript source `m` under tsx's require hook (a worker's or a process's boot). */
export function sourceBoot(m: Required<PackageModule>): string {
  return `require(${JSON.stringify(m.tsx)}).register(); require(${JSON.stringify(m.path)});`;
}

/**
 * Starts the module `name` (no extension), a sibling of the caller's module `from` (its
 * `import.meta.url`), on a new worker thread.
 */
export function startModuleWorker(from: string, name: string, options: WorkerOptions): Worker {
  // from now on a fork of this process is expensive: programs run from a small one (program-host.ts)
  startProgramHost();
  const m = packageModule(from, name);
  if (m.tsx === undefined) return watchWorker(new Worker(m.path, options));
  return watchWorker(new Worker(sourceBoot({ path: m.path, tsx: m.tsx }), { ...options, eval: true }));
}
