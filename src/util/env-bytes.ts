// Owns reading a size threshold that an environment variable may set (the tests take a thread's way
// with small agents through these): a non-negative number of bytes, or the default when the variable
// is unset, empty or not such a number.

/** The bytes `name` sets in the environment, else `fallback`. */
export function envBytes(name: string, fallback: number): number {
  const raw = process.env[name];
  const n = Number(raw);
  return raw && Number.isFinite(n) && n >= 0 ? n : fallback;
}
