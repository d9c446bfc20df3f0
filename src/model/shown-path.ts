// Owns how an error message quotes a path it was given (by a user, a config, a bundle): whole up to
// MAX_SHOWN_PATH characters, else its start and its end with the middle elided once, so a path near
// PATH_MAX (4,096 bytes) cannot make a message kilobytes long. Pure.

/** The longest path a message shows whole. */
export const MAX_SHOWN_PATH = 300;

/**
 * `path` for a message: as it is when at most MAX_SHOWN_PATH characters, else its first and last
 * characters around `…[N characters]…` (N: how many were left out), MAX_SHOWN_PATH characters or so in
 * all. The start says where it is, the end which file it is.
 */
export function shownPath(path: string): string {
  const chars = [...path]; // code points: an elision never splits a character
  if (chars.length <= MAX_SHOWN_PATH) return path;
  const head = 150;
  const tail = 120;
  const left = chars.length - head - tail;
  return `${chars.slice(0, head).join('')}…[${left} characters]…${chars.slice(-tail).join('')}`;
}

/**
 * The message of a system call's error (Node's `ENAMETOOLONG: name too long, mkdir '<path>'`) with the
 * long paths it quotes (`path`, `dest`) bounded: left out when `context` (the message it is added to)
 * already shows the same path or one inside it (their shown starts are the same), else shown as
 * shownPath shows them. Each long path is then in the whole message once, elided once.
 */
export function boundedErrnoMessage(err: Error, context = ''): string {
  let text = err.message;
  const e = err as NodeJS.ErrnoException & { dest?: unknown };
  for (const p of [e.path, e.dest]) {
    if (typeof p !== 'string' || [...p].length <= MAX_SHOWN_PATH) continue;
    const start = shownPath(p).slice(0, shownPath(p).indexOf('…'));
    if (context.includes(start)) text = text.split(` '${p}'`).join('');
    text = text.split(p).join(shownPath(p));
  }
  return text;
}
