// Owns turning CLI flags (and the config file they point at) into a configured LocalSnapshotter, and
// running a command body with uniform error handling: typed errors become their exit status, with a
// JSON error object on stdout under --json and a one-line message on stderr always.

import { type LoadedConfig, loadConfig } from '../config/config.js';
import { ExitCode, InvalidInputError, SnapshotError } from '../model/errors.js';
import { LocalSnapshotter } from '../snapshotter/local.js';
import { ProgressReporter } from './progress.js';

export interface StoreFlags {
  stateRoot?: string;
  memdirRoot?: string;
  sqliteRoot?: string;
  config?: string;
  zstdLevel?: number;
}

export interface OutputFlags {
  json?: boolean;
  progress?: boolean;
}

export function loadFlagsConfig(flags: StoreFlags): LoadedConfig | undefined {
  const path = flags.config ?? process.env.NEXO_MEMORY_CONFIG;
  return path ? loadConfig(path) : undefined;
}

/** Flags override the config file, which overrides the defaults (state root `./state`). */
export function snapshotterFrom(flags: StoreFlags): LocalSnapshotter {
  const cfg = loadFlagsConfig(flags)?.snapshot ?? {};
  const stateRoot = flags.stateRoot ?? cfg.root ?? './state';
  return new LocalSnapshotter({
    stateRoot,
    memdirRoot: flags.memdirRoot ?? cfg.memdir_root ?? stateRoot,
    sqliteRoot: flags.sqliteRoot ?? cfg.sqlite_root ?? stateRoot,
    ...(cfg.lock_timeout_secs !== undefined ? { lockTimeoutMs: cfg.lock_timeout_secs * 1000 } : {}),
    zstdLevel: flags.zstdLevel ?? cfg.zstd_level ?? 3,
    ...(cfg.zstd_workers !== undefined ? { zstdWorkers: cfg.zstd_workers } : {}),
    onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
    ...(cfg.encryption?.recipients ? { recipients: cfg.encryption.recipients } : {}),
    ...(cfg.redaction
      ? {
          redaction: {
            ...(cfg.redaction.allowlist ? { allowlist: cfg.redaction.allowlist } : {}),
            ...(cfg.redaction.exclude_rules ? { excludeRules: cfg.redaction.exclude_rules } : {}),
          },
        }
      : {}),
  });
}

/** The identity file: --decrypt-identity, else the config's encryption.identity_path. */
export function identityFrom(flags: StoreFlags & { decryptIdentity?: string }): string | undefined {
  return flags.decryptIdentity ?? loadFlagsConfig(flags)?.snapshot.encryption?.identity_path;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function parseIntFlag(name: string): (v: string) => number {
  return (v: string) => {
    if (!/^-?[0-9]+$/.test(v))
      throw new InvalidInputError(`${name} must be an integer, got ${JSON.stringify(v)}`);
    return Number(v);
  };
}

/** Runs a command body; sets the exit status from its result or its error. */
export async function runCommand(
  flags: OutputFlags,
  body: (progress: ProgressReporter) => Promise<number | undefined>,
): Promise<void> {
  const progress = new ProgressReporter(flags.progress !== false);
  try {
    const code = await body(progress);
    progress.done();
    process.exitCode = code ?? ExitCode.ok;
  } catch (err) {
    progress.done();
    const e = err instanceof SnapshotError ? err : undefined;
    const message = e ? e.message : err instanceof Error ? err.message : String(err);
    if (flags.json) {
      printJson({
        error: e ? e.toJSON() : { code: 'INTERNAL', message, exit_code: ExitCode.error, outcome: 'error' },
      });
    }
    process.stderr.write(`error: ${message}\n`);
    if (!e && process.env.NEXO_MEMORY_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    process.exitCode = e ? e.exitCode : ExitCode.error;
  }
}
