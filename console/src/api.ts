// The console's client of the daemon's HTTP API: the bearer token (kept in sessionStorage, sent only
// as `Authorization: Bearer`, never in a URL, no cookie), JSON calls with the API's error shape, and
// the live feed (`/v1/events`) read with fetch — EventSource cannot send the header.

const KEY = 'nexo-memory-token';

export function getToken(): string | undefined {
  return sessionStorage.getItem(KEY) ?? undefined;
}

export function setToken(token: string | undefined): void {
  if (token) sessionStorage.setItem(KEY, token);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The id of the daemon's log line that holds the whole message (the API's `error_id`). */
    readonly errorId?: string,
  ) {
    super(message);
  }
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const token = getToken();
  return { ...(token ? { authorization: `Bearer ${token}` } : {}), ...extra };
}

let unauthorized: ((message: string) => void) | undefined;

/**
 * Called when a request made with the stored token is refused as unauthorized (401): the daemon's
 * token was changed or revoked. The console then goes back to its login instead of showing empty data.
 */
export function onUnauthorized(handler: ((message: string) => void) | undefined): void {
  unauthorized = handler;
}

let refused: (() => void) | undefined;

/**
 * Called when a request is refused 401 or 403 (other than `/v1/rights` itself): what the token may do
 * changed (the daemon restarted with other tokens or settings, the restore gate closed), so the console
 * asks for its rights again and shows only the controls it can use.
 */
export function onRefused(handler: (() => void) | undefined): void {
  refused = handler;
}

/** The API's error of a refused response; `sent`: the token the request carried. */
async function failure(res: Response, sent: string | undefined): Promise<ApiError> {
  let e: ApiError;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string; error_id?: string } };
    e = new ApiError(
      res.status,
      body.error?.code ?? 'HTTP',
      body.error?.message ?? res.statusText,
      body.error?.error_id,
    );
  } catch {
    e = new ApiError(res.status, 'HTTP', res.statusText);
  }
  // only a refusal of the token still in use: an answer to an earlier request (sent without a token,
  // or with one replaced since by a login) says nothing about it
  if (e.status === 401 && sent !== undefined && sent === getToken()) unauthorized?.(e.message);
  else if ((e.status === 401 || e.status === 403) && new URL(res.url).pathname !== '/v1/rights') refused?.();
  return e;
}

/** A path under the API with its query (values encoded). */
export function apiPath(
  path: string,
  query: Record<string, string | number | boolean | undefined> = {},
): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export const seg = (s: string): string => encodeURIComponent(s);

export async function call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const sent = getToken();
  const res = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    credentials: 'omit',
    cache: 'no-store',
  });
  if (!res.ok) throw await failure(res, sent);
  return (await res.json()) as T;
}

export const get = <T>(path: string): Promise<T> => call<T>('GET', path);

/**
 * Downloads a file through fetch (the token in the header) and hands it to the browser as a blob;
 * returns what the server says the copy is (`X-Nexo-Copy`: redacted, already_redacted, encrypted, exact).
 */
export async function download(path: string, fallbackName: string): Promise<string | undefined> {
  const sent = getToken();
  const res = await fetch(path, { headers: headers(), credentials: 'omit', cache: 'no-store' });
  if (!res.ok) throw await failure(res, sent);
  const copy = res.headers.get('x-nexo-copy') ?? undefined;
  const disposition = res.headers.get('content-disposition') ?? '';
  const name = /filename="([A-Za-z0-9._-]+)"/.exec(disposition)?.[1] ?? fallbackName;
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return copy;
}

export interface FeedEvent {
  event: string;
  data: unknown;
}

/**
 * Reads `/v1/events` until `signal` aborts, calling `onEvent` per event; reconnects after a pause when
 * the stream ends or fails (the daemon restarting, say). `onState` tells whether it is connected.
 */
export async function followEvents(
  onEvent: (e: FeedEvent) => void,
  onState: (connected: boolean) => void,
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    try {
      const sent = getToken();
      const res = await fetch('/v1/events', {
        headers: headers(),
        credentials: 'omit',
        cache: 'no-store',
        signal,
      });
      if (!res.ok || !res.body) throw await failure(res, sent);
      onState(true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut = buf.indexOf('\n\n');
        while (cut >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          cut = buf.indexOf('\n\n');
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length) onEvent({ event, data: JSON.parse(data.join('\n')) });
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status === 401) {
        onState(false);
        return;
      }
    }
    onState(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}
