// Owns turning CLI flags (and the config file they point at) into a configured LocalSnapshotter, and
// running a command body with uniform error handling: typed errors become their exit status, with a
// JSON error object on stdout under --json and a one-line message on stderr always. Before a body runs,
// runCommand loads what it uses synchronously (the library, the config file when one is given, the
// run's telemetry); nothing here imports them at start-up, so `--version` and help load none of it.

import { resolve } from 'node:path';
import type { BackendObserver } from '../backend/remote.js';
import type { LoadedConfig, OnDemandSection } from '../config/config.js';
import { CONFIG_DEFAULTS } from '../config/defaults.js';
import {
  ConfigError,
  ExitCode,
  InvalidInputError,
  nativeModuleError,
  SnapshotError,
  systemError,
} from '../model/errors.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import { envIntegerWarnings } from '../util/env-number.js';
import { looseKeyFileWarning, type SecretKeyKind } from '../util/key-file.js';
import { ProgressReporter } from './progress.js';
import type { TelemetryFlags } from './telemetry.js';
import { terminalText } from './terminal.js';

export interface StoreFlags extends TelemetryFlags {
  stateRoot?: string;
  memdirRoot?: string;
  sqliteRoot?: string;
  config?: string;
  zstdLevel?: number;
  /** `--repo`: the repository's location (path, nats://…, s3://…); else NEXO_MEMORY_REPO, else the config. */
  repo?: string;
}

/**
 * Commands that write the store: refused when the config says `enabled: false`. `recover` is not one:
 * finishing an interrupted restore makes the agent consistent again and must stay possible.
 */
const WRITING_COMMANDS = new Set([
  'snapshot',
  'restore',
  'import',
  'delete',
  'gc',
  'pin',
  'unpin',
  'prune',
  'migrate',
]);
/** What the program tells us about the command about to run. */
export interface RunningCommand {
  name(): string;
  /** `cli` when the user gave the option, `default` when commander filled it in. */
  getOptionValueSource(key: string): string | undefined;
}
let running: RunningCommand | undefined;
let currentCommand: string | undefined;

/** Set by the program before a command runs (the `enabled` gate and flag-vs-config need it). */
export function setCurrentCommand(cmd: RunningCommand): void {
  running = cmd;
  currentCommand = cmd.name();
}

export interface OutputFlags {
  json?: boolean;
  progress?: boolean;
}

/** The on-demand config sections a command reads; the others are left unresolved (config.ts). */
const SECTIONS_READ: Record<string, OnDemandSection[]> = { serve: ['server'] };

/** What a command body uses synchronously, loaded by runCommand (prepareRun) before it runs. */
interface RunSupport {
  local: typeof import('../snapshotter/local.js');
  runtime: typeof import('../config/runtime.js');
  telemetry: typeof import('./telemetry.js');
  /** The config file named by the flags: what it holds, or why it could not be read. */
  config?: { path: string; loaded?: LoadedConfig; error?: unknown };
}
let support: RunSupport | undefined;

const configPath = (flags: StoreFlags): string | undefined => flags.config ?? process.env.NEXO_MEMORY_CONFIG;

/**
 * Loads the library, the config file (when one is named) and the run's telemetry. A config file that
 * does not load is remembered, not reported: its error surfaces where the command reads the config, as
 * if it had been read there (a command that never reads it, keygen, is not stopped by it).
 */
async function prepareRun(flags: StoreFlags): Promise<RunSupport> {
  const path = configPath(flags);
  const [local, runtime, telemetry, config] = await Promise.all([
    import('../snapshotter/local.js'),
    import('../config/runtime.js'),
    import('./telemetry.js'),
    path
      ? import('../config/config.js').then(({ loadConfig }) => {
          const sections = SECTIONS_READ[currentCommand ?? ''];
          try {
            return { path, loaded: loadConfig(path, sections ? { sections } : {}) };
          } catch (error) {
            return { path, error };
          }
        })
      : undefined,
  ]);
  await telemetry.prepareRunTelemetry(config?.loaded?.snapshot ?? {}, flags, currentCommand === 'serve');
  support = { local, runtime, telemetry, ...(config ? { config } : {}) };
  return support;
}

function loaded(): RunSupport {
  if (!support) throw new Error('internal: a command body ran outside runCommand');
  return support;
}

export function loadFlagsConfig(flags: StoreFlags): LoadedConfig | undefined {
  const path = configPath(flags);
  if (!path) return undefined;
  const c = loaded().config;
  if (c?.path !== path)
    throw new Error(`internal: the config file ${path} was not loaded before the command`);
  if (c.error !== undefined) throw c.error;
  return c.loaded;
}

/** The secret key files this run checked (one warning each, however often the run reads them). */
const checkedKeyFiles = new Set<string>();

/**
 * `path`, after one warning on stderr when group or others can read it: like ssh with a private key,
 * the file is still used (docs/decisions.md, "Format").
 */
function checkKeyFile<T extends string | undefined>(path: T, kind: SecretKeyKind): T {
  // one warning per file, however it is named (the config's path and the flag's may differ)
  if (path === undefined || checkedKeyFiles.has(resolve(path))) return path;
  checkedKeyFiles.add(resolve(path));
  const warning = looseKeyFileWarning(path, kind);
  if (warning) process.stderr.write(`warning: ${terminalText(warning)}\n`);
  return path;
}

/** `path`, an age identity file, checked once per run (checkKeyFile). */
export const checkIdentityFile = <T extends string | undefined>(path: T): T => checkKeyFile(path, 'identity');

/** `path`, an ed25519 signing secret key file, checked once per run (checkKeyFile). */
export const checkSigningKeyFile = <T extends string | undefined>(path: T): T =>
  checkKeyFile(path, 'signing');

/** Flags override the config file, which overrides the defaults (state root `./state`). */
export function snapshotterFrom(flags: StoreFlags): LocalSnapshotter {
  const { local, runtime, telemetry } = loaded();
  const loadedConfig = loadFlagsConfig(flags);
  const cfg = loadedConfig?.snapshot ?? {};
  // the config's identity opens an encrypted repository, and serve decrypts with it; its signing key
  // signs every snapshot the run makes (snapshot, restore's anchor, import, export, migrate, serve)
  checkIdentityFile(cfg.encryption?.identity_path);
  checkSigningKeyFile(cfg.signing?.key_path);
  if (cfg.enabled === false && currentCommand && WRITING_COMMANDS.has(currentCommand)) {
    throw new ConfigError(
      `${loadedConfig?.keyPrefix ?? 'memory.snapshot'}.enabled is false in ${loadedConfig?.path}: \`${currentCommand}\` is disabled on this host`,
    );
  }
  const run = telemetry.runTelemetry();
  const metrics = run.metrics;
  const s = new local.LocalSnapshotter({
    ...runtime.snapshotterOptionsFromConfig(cfg, flags, loadedConfig?.keyPrefix),
    onWarning: (m) => process.stderr.write(`warning: ${terminalText(m)}\n`),
    observers: run.observers,
    backendObserver: (backend: string) => storeObserver(backend, metrics?.storeObserver(backend)),
  });
  built.push(s);
  return s;
}

/** The least time between two of storeObserver's warnings of one store. */
const RETRY_WARNING_EVERY_MS = 5000;

/**
 * What a run is told of a remote store's requests: the metrics' observer, when the run keeps metrics,
 * and on stderr, when a request failed and will be tried again, a warning: at the first such failure
 * and then at most every RETRY_WARNING_EVERY_MS, with the failed tries counted since (the requests of
 * a run, and a client's own reconnections, retry side by side); a request that succeeds ends the count,
 * so a daemon's next outage starts again at one. A store that did not answer took 50 s of silence
 * before its error (stop 58's walk through the README).
 */
function storeObserver(backend: string, metrics: BackendObserver | undefined): BackendObserver {
  let failures = 0;
  let warnedAt: number | undefined;
  return {
    request: (op, outcome, bytes) => {
      metrics?.request(op, outcome, bytes);
      if (outcome === 'ok') {
        failures = 0;
        warnedAt = undefined;
      }
    },
    retry: (op, failed, delayMs, reason) => {
      metrics?.retry?.(op, failed, delayMs, reason);
      failures++;
      const now = performance.now();
      if (warnedAt !== undefined && now - warnedAt < RETRY_WARNING_EVERY_MS) return;
      warnedAt = now;
      const line = `a request to the ${backend} repository failed (${op}: ${reason}); retrying (${failures} failed ${failures === 1 ? 'try' : 'tries'} so far)`;
      process.stderr.write(`warning: ${terminalText(line)}\n`);
    },
  };
}

/** The snapshotters this run built: closed when the command ends (a remote store's connections). */
const built: LocalSnapshotter[] = [];

async function closeBuilt(): Promise<void> {
  await Promise.all(built.splice(0).map((s) => s.close().catch(() => {})));
}

/** Restore's automatic pre-restore snapshot: the flag (`--no-auto-pre-snapshot`), else auto_pre_restore. */
export function autoPreSnapshotFrom(flags: StoreFlags & { autoPreSnapshot?: boolean }): boolean {
  if (flags.autoPreSnapshot === false || running?.getOptionValueSource('autoPreSnapshot') === 'cli')
    return flags.autoPreSnapshot !== false;
  return loadFlagsConfig(flags)?.snapshot.auto_pre_restore ?? CONFIG_DEFAULTS.auto_pre_restore;
}

/** The identity file: --decrypt-identity, else the config's encryption.identity_path. */
export function identityFrom(flags: StoreFlags & { decryptIdentity?: string }): string | undefined {
  return checkIdentityFile(
    flags.decryptIdentity ?? loadFlagsConfig(flags)?.snapshot.encryption?.identity_path,
  );
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Items per JSON.stringify call of printJsonArray, and the text it gathers before a write. A batch's
 * text (~25 KB for listing entries) stays far below V8's large-object size (~128 KiB): larger strings
 * get memory of their own each, freed only by a full collection. Measured on a `list` of 10,000
 * (docs/operations.md, stop 33): batches of 256 took ~50 ms more than batches of 16-64.
 */
const ARRAY_BATCH = 32;
const WRITE_AT = 32 * 1024;

/**
 * printJson's very text for an array, written in pieces of ~32 KiB as it is made: a large answer (a
 * `list` of 10,000 snapshots is ~7.6 MB) is never one string, a copy of it for the write and a third
 * queued behind a slow reader. Waits for the output to drain before the next piece; stops when the
 * reader went away (`| head`: the rest is dropped, as main.ts drops it for every write).
 */
export async function printJsonArray(items: readonly unknown[]): Promise<void> {
  if (items.length <= ARRAY_BATCH) return printJson(items);
  const out = process.stdout;
  // JSON.stringify of a batch, its brackets cut off, is the batch's lines as they are in the whole
  let text = '[\n';
  for (let i = 0; i < items.length; i += ARRAY_BATCH) {
    const batch = JSON.stringify(items.slice(i, i + ARRAY_BATCH), null, 2);
    text += `${i > 0 ? ',\n' : ''}${batch.slice(2, -2)}`;
    if (text.length >= WRITE_AT) {
      if (!out.write(text) && !(await drained(out))) return;
      text = '';
    }
  }
  out.write(`${text}\n]\n`);
}

/** Whether `stream` drained (true), or failed or closed first (false). */
function drained(stream: NodeJS.WritableStream & { destroyed: boolean }): Promise<boolean> {
  if (stream.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const settle = (ok: boolean) => () => {
      stream.off('drain', onDrain).off('error', onEnd).off('close', onEnd);
      resolve(ok);
    };
    const onDrain = settle(true);
    const onEnd = settle(false);
    stream.once('drain', onDrain).once('error', onEnd).once('close', onEnd);
  });
}

export function parseIntFlag(name: string): (v: string) => number {
  return (v: string) => {
    if (!/^-?[0-9]+$/.test(v))
      throw new InvalidInputError(`${name} must be an integer, got ${JSON.stringify(v)}`);
    const n = Number(v);
    // as the config file's numbers: an integer JavaScript holds exactly (20 digits became 1e20)
    if (!Number.isSafeInteger(n))
      throw new InvalidInputError(`${name} must be an integer of at most 2^53 − 1, got ${JSON.stringify(v)}`);
    return n;
  };
}

/** Runs a command body; sets the exit status from its result or its error. */
export async function runCommand(
  flags: OutputFlags & TelemetryFlags & StoreFlags,
  body: (progress: ProgressReporter) => Promise<number | undefined>,
): Promise<void> {
  const progress = new ProgressReporter(flags.progress !== false);
  checkedKeyFiles.clear(); // a run of its own (tests run the CLI in-process, one run after another)
  // a numeric variable that is not a whole number counts as its default: said, not silent
  for (const w of envIntegerWarnings()) process.stderr.write(`warning: ${terminalText(w)}\n`);
  let run: RunSupport | undefined;
  try {
    run = await prepareRun(flags);
    const code = await body(progress);
    await closeBuilt();
    progress.done();
    process.exitCode = code ?? ExitCode.ok;
    await run.telemetry.finishRunTelemetry(flags);
  } catch (err) {
    await closeBuilt();
    const telemetry = run?.telemetry ?? (await import('./telemetry.js').catch(() => undefined));
    await telemetry?.finishRunTelemetry(flags);
    progress.fail();
    process.exitCode = reportError(err, flags.json === true);
  }
}

/**
 * Prints an error as every command does — a JSON error object on stdout under --json, one line on
 * stderr always — and returns its exit status. `alreadyPrinted`: commander wrote the line itself.
 */
export function reportError(err: unknown, json: boolean, alreadyPrinted = false): number {
  const e = err instanceof SnapshotError ? err : (nativeModuleError(err) ?? systemError(err));
  const message = e ? e.message : err instanceof Error ? err.message : String(err);
  if (json) {
    printJson({
      error: e ? e.toJSON() : { code: 'INTERNAL', message, exit_code: ExitCode.error, outcome: 'error' },
    });
  }
  if (!alreadyPrinted) process.stderr.write(`error: ${terminalText(message)}\n`);
  if (!e && process.env.NEXO_MEMORY_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
  return e ? e.exitCode : ExitCode.error;
}
