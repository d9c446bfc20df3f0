// Owns reading a whole number that an environment variable may set (a limit, a threshold, a delay), one
// rule for every such variable (stop 47): ASCII spaces, tabs and line ends around the value are
// ignored, and the value is then digits only (0-9), a safe integer. Unset, empty or blank is the
// default; anything else — a sign, a fraction, 0x…, 0b…, an exponent, a unit — is the default too, and
// envIntegerWarnings names it for a program that has a warning channel (the CLI prints it). `Number()`
// read ' ', '0x0', '0.0', '-0' and '0b0' as 0, which turned the git fuse off.

/** Every variable read as a whole number (the CLI warns of a value that is not one). */
export const ENV_INTEGERS = [
  'NEXO_MEMORY_GIT_MAX_OBJECT_BYTES',
  'NEXO_MEMORY_GIT_CPU_SECONDS',
  'NEXO_MEMORY_SQLITE_CHECK_CPU_SECONDS',
  'NEXO_MEMORY_SQLITE_CHECK_MAX_BYTES',
  'NEXO_MEMORY_COMPRESS_THREAD_MIN_BYTES',
  'NEXO_MEMORY_SQLITE_THREADS_MIN_BYTES',
  'NEXO_MEMORY_PROGRESS_AFTER_MS',
  'NEXO_MEMORY_SERVE_MAX_CONNECTIONS',
] as const;

export type EnvIntegerName = (typeof ENV_INTEGERS)[number];

/** What a variable's value `raw` sets: a whole number, nothing (unset, empty, blank) or not a number. */
export function parseEnvInteger(raw: string | undefined): number | 'unset' | 'invalid' {
  if (raw === undefined || /^[ \t\r\n]*$/.test(raw)) return 'unset';
  const m = /^[ \t\r\n]*([0-9]+)[ \t\r\n]*$/.exec(raw);
  if (!m) return 'invalid';
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : 'invalid';
}

/** The whole number `name` sets in `env`, else `fallback` (unset, blank or not a whole number). */
export function envInteger(
  name: EnvIntegerName,
  fallback: number,
  env: NodeJS.ProcessEnv = process.env,
): number {
  const v = parseEnvInteger(env[name]);
  return typeof v === 'number' ? v : fallback;
}

/** One warning for each variable of ENV_INTEGERS set to something that is not a whole number. */
export function envIntegerWarnings(env: NodeJS.ProcessEnv = process.env): string[] {
  return ENV_INTEGERS.filter((name) => parseEnvInteger(env[name]) === 'invalid').map((name) => {
    const raw = env[name]!;
    const shown = JSON.stringify(raw.length > 40 ? `${raw.slice(0, 40)}…` : raw);
    return `${name}=${shown} is not a whole number (digits only; 0 where it turns something off): its default is used`;
  });
}
