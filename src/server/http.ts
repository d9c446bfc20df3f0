// Owns the daemon's HTTP server on node:http (no framework): route matching with `:param` segments,
// the bearer-token gate per route, reading JSON bodies (size limit, content type, syntax), rendering
// results as JSON, text or a byte stream, and every failure as `{"error": {code, message, …}}` with
// the status of its stable code. Each request is a tracked operation until its handler has ended and
// its response has closed, so a shutdown waits for it; but never on its client: a body still arriving
// is refused (503 SHUTTING_DOWN, connection closed) and a response still being sent has a grace. The
// log line of a request says its true outcome: its status, and whether the client went away first
// (a client that closed after the whole body is a delivery, not an error).
// Every response carries the security headers (a strict Content-Security-Policy, nosniff, no framing,
// no referrer), so the console's pages and the API's JSON alike are never run as anything else.
// A request whose raw path has a dot segment (`..`, `%2e%2e`, …), or whose target is not a plain path
// (`//host/…`, `/\…`, an absolute URL, `*`; a `\` in it), is refused before routing (400).
// A request to the API (`/v1/…`) that a browser sent from another site or origin (`Sec-Fetch-Site`,
// `Origin`) is refused before routing, whatever the tokens (403 CROSS_SITE).
// Two tokens: the write token (every route) and an optional read token (read routes only); a request's
// rights are what its token allows.
// No operation logic: routes.ts maps each route to one library call.

import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import {
  CrossSiteError,
  ForbiddenError,
  InvalidInputError,
  MethodNotAllowedError,
  PayloadTooLargeError,
  RouteNotFoundError,
  ShuttingDownError,
  SnapshotError,
  UnauthorizedError,
} from '../model/errors.js';
import { bearerToken, tokenMatches } from './auth.js';
import { ClientErrors } from './client-errors.js';
import { httpStatusOf } from './status.js';
import type { OperationTracker } from './tracker.js';

/** `open`: no token ever; `read`: the token when one is configured; `write`: always the token. */
export type AuthLevel = 'open' | 'read' | 'write';

/** What a request's bearer token allows: `read` also when no token is configured at all (reads open). */
export type Rights = 'none' | 'read' | 'write';

export interface ApiRequest {
  method: string;
  rights: Rights;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body; `{}` when the request had none. */
  body: unknown;
}

export type ApiResult =
  | { status?: number; json: unknown; headers?: Record<string, string> }
  | { status?: number; text: string; contentType: string }
  | { status?: number; bytes: Buffer; headers: Record<string, string> }
  | { status?: number; stream: Readable; headers: Record<string, string> };

export interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  /** `/v1/agents/:agent/snapshots/:id`: literal segments and `:name` parameters. */
  path: string;
  auth: AuthLevel;
  handle(req: ApiRequest): Promise<ApiResult>;
}

export interface ApiServerOptions {
  routes: Route[];
  /** The bearer token; without one, `write` routes are refused (403) and `read` routes are open. */
  token?: string;
  /** A token that only reads: `read` routes accept it, `write` routes refuse it (403). */
  readToken?: string;
  /** Largest accepted request body (default 64 KiB). */
  maxBodyBytes?: number;
  /**
   * Once `tracker` closes (shutdown): how long a response being sent, its operation over, has to reach
   * its client before its connection is closed (default 30 s). A request body still arriving is not
   * waited for at all (503 SHUTTING_DOWN, connection closed).
   */
  shutdownGraceMs?: number;
  /**
   * How long a request may take to arrive in full, headers and body (default 60 s; the headers alone
   * get at most 30 s). Past it the server answers 408 and closes the connection.
   */
  requestTimeoutMs?: number;
  /**
   * How long a response may wait for its client to take more bytes (default 60 s). Past it the server
   * closes the connection: a download's stream, and the bundle readers' lock it holds, are released.
   */
  sendStallMs?: number;
  tracker: OperationTracker;
  /** One line per request (method, path, status and whether the client went away, milliseconds). */
  log?: (line: string) => void;
  /**
   * What a client is told of a failure, and the log line with the whole message under the same error id
   * (default: the host's temporary and home directories are named by role, nothing is logged).
   */
  clientErrors?: ClientErrors;
  /**
   * Answer only requests addressed to a loopback name (the daemon listens on loopback): a `Host` header
   * naming anything else is refused (403) before any route runs, so a web page whose name an attacker
   * re-points at 127.0.0.1 (DNS rebinding) reads nothing, whatever the tokens.
   */
  loopbackHostsOnly?: boolean;
  /**
   * Connections served at once (default DEFAULT_MAX_CONNECTIONS; 0: no limit). One more is closed as
   * it arrives (Node's `maxConnections`), so a local flood of idle sockets cannot use up the file
   * descriptors that snapshots and restores need (stop 62).
   */
  maxConnections?: number;
}

/** The daemon's default limit of connections at once (NEXO_MEMORY_SERVE_MAX_CONNECTIONS overrides). */
export const DEFAULT_MAX_CONNECTIONS = 256;

/** How often a run of connections closed over the limit is logged (the first at once). */
const DROP_LOG_MS = 10_000;

/**
 * Why a request to the API is one a browser sent from another site, or undefined: `Sec-Fetch-Site`
 * `cross-site` or `same-site` (another port of the same host is same-site), or an `Origin` whose host
 * is not the `Host` the request was sent to (`null` included: a sandboxed frame, a file). The console
 * of the daemon's own origin sends `same-origin` and its own `Origin`; a client that is not a browser
 * (curl, the library's HTTP client) sends neither header and is not concerned.
 */
export function crossSiteReason(headers: IncomingHttpHeaders): string | undefined {
  const site = headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') return `Sec-Fetch-Site: ${site}`;
  const origin = headers.origin;
  if (origin === undefined) return undefined;
  let same = false;
  try {
    const u = new URL(origin);
    // the Host spelt as that scheme spells a host (its default port left out), to compare
    const host =
      headers.host === undefined ? undefined : new URL(`${u.protocol}//${headers.host.trim()}`).host;
    same = (u.protocol === 'http:' || u.protocol === 'https:') && host !== undefined && u.host === host;
  } catch {
    same = false;
  }
  if (!same) return `Origin ${JSON.stringify(origin.slice(0, 100))} is not this daemon's own`;
  return undefined;
}

/** The host name of a `Host` header (`name:port`, `[v6]:port`, or a name alone), lowercased. */
export function hostNameOf(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  return colon >= 0 && h.indexOf(':') === colon ? h.slice(0, colon) : h;
}

/** Whether a listen address is loopback: `localhost`, 127.0.0.0/8 or `::1`. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Whether a `Host` name is loopback: the same rule, an IPv6 address in its brackets (`[::1]`). */
export function isLoopbackHostName(name: string): boolean {
  return isLoopback(name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name);
}

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
/** What a response being sent when the shutdown begins (or its operation ends) has to reach its client. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 30_000;

/** One request's state as its handler and the shutdown see it. */
interface Exchange {
  /** Its operation is over (or never ran): what remains is sending the response. */
  delivering: boolean;
  /** The shutdown's grace ran out before the response reached the client: its connection was closed. */
  cut: boolean;
  deliver(): void;
}

/**
 * On every response. The console's scripts and styles are files of this origin (no inline script or
 * style, no eval); nothing may frame it; the API's JSON is never sniffed as HTML.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  // responses carry memory (file contents, rows, diffs): no cache keeps a copy (the console's files
  // set their own)
  'cache-control': 'no-store',
};

/** The rights of the presented token (constant-time comparisons with both configured tokens). */
function rightsOf(opts: ApiServerOptions, header: string | undefined): Rights {
  const presented = bearerToken(header);
  const write = opts.token !== undefined && tokenMatches(opts.token, presented);
  const read = opts.readToken !== undefined && tokenMatches(opts.readToken, presented);
  if (write) return 'write';
  if (read) return 'read';
  return opts.token || opts.readToken ? 'none' : 'read';
}

function match(pattern: string, path: string): Record<string, string> | undefined {
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const g = got[i]!;
    if (w.startsWith(':')) {
      if (g === '') return undefined;
      try {
        params[w.slice(1)] = decodeURIComponent(g);
      } catch {
        throw new InvalidInputError(`malformed percent-encoding in path segment ${JSON.stringify(g)}`);
      }
    } else if (w !== g) {
      return undefined;
    }
  }
  return params;
}

/**
 * The first dot segment of a request target's raw path, as sent: `.` or `..`, any of its dots written
 * `%2e` (any case); undefined when there is none. The URL parser resolves them (and takes `\` for
 * `/`) before the route is matched, so `/v1/agents/ana/%2e%2e/bob/snapshots` answered for bob: such a
 * path is refused instead, before routing (stop 45).
 */
export function dotSegmentOf(target: string): string | undefined {
  const end = target.search(/[?#]/);
  const path = end < 0 ? target : target.slice(0, end);
  for (const segment of path.split(/[/\\]/)) {
    const plain = segment.replace(/%2e/gi, '.');
    if (plain === '.' || plain === '..') return segment;
  }
  return undefined;
}

/**
 * Why a request target is not a plain path (origin-form, RFC 9112 §3.2.1), or undefined when it is: it
 * must begin with one `/`. The URL parser takes a target beginning `//` (or `/\`, `\`: it reads `\` as
 * `/`) for a network-path reference, `//evil.example/v1/agents` as the host `evil.example` and the path
 * `/v1/agents`, and an absolute `http://host/…` as its host and path, so such targets reached the route
 * of a path that was never sent; a target without a leading `/` (`v1/agents`, `*`) was resolved
 * against `/`. A `\` anywhere in the path is refused too: the parser turns it into a `/`, another
 * path than the one sent. The daemon is no proxy: every such target is refused before routing (stop 46).
 */
export function targetFormProblem(target: string): string | undefined {
  const end = target.search(/[?#]/);
  const path = end < 0 ? target : target.slice(0, end);
  if (!path.startsWith('/'))
    return 'it does not begin with "/" (only a path is accepted: no absolute URL, authority or "*")';
  if (path.startsWith('//')) return 'it begins with "//" (a URL parser reads what follows as a host)';
  if (path.includes('\\')) return 'it has a "\\" (a URL parser reads it as "/"; send %5C for the character)';
  return undefined;
}

/** The response to a failure: the status of its code, and the client's form of it (client-errors.ts). */
function errorBody(
  errors: ClientErrors,
  err: unknown,
  where: string,
): { status: number; body: Record<string, unknown> } {
  const status = err instanceof SnapshotError ? httpStatusOf(err.code) : 500;
  return { status, body: { error: errors.report(err, where) } };
}

/**
 * The request's JSON body. Waiting for it is waiting on the client: when the daemon begins to shut down
 * (`tracker` closes) before the whole body came, it stops waiting and rejects with ShuttingDownError,
 * the rest unread (no operation has started; the caller refuses the request and closes the connection).
 */
async function readBody(req: IncomingMessage, limit: number, tracker: OperationTracker): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > limit) throw new PayloadTooLargeError(`request body over ${limit} bytes`);
  if (tracker.closed) throw new ShuttingDownError();
  const raw = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let unsubscribe = () => {};
    const settle = (err: unknown, body?: Buffer) => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      unsubscribe();
      if (err) reject(err);
      else resolve(body!);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) settle(new PayloadTooLargeError(`request body over ${limit} bytes`));
      else chunks.push(chunk);
    };
    const onEnd = () => settle(undefined, Buffer.concat(chunks));
    const onError = (err: Error) => settle(err);
    const onClose = () => {
      if (!req.complete)
        settle(
          Object.assign(new Error('request closed before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }),
        );
    };
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
    unsubscribe = tracker.onClose(() => settle(new ShuttingDownError()));
  });
  const text = raw.toString('utf8');
  if (text.trim() === '') return {};
  const type = String(req.headers['content-type'] ?? '');
  if (!/^application\/(.+\+)?json\b/i.test(type)) {
    throw new InvalidInputError(
      `request body must be JSON (Content-Type: application/json), got ${JSON.stringify(type || 'none')}`,
    );
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InvalidInputError(`request body is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Streams `body` into the response and resolves with the bytes the connection took (writes that
 * completed, so handed to the kernel), once the response is over: all of them, or fewer when the
 * client went away. A client that has every byte may close before the end of the stream is seen;
 * counting completed writes tells that apart from one that left in the middle. A read error of the
 * body (the client still there) rejects.
 */
async function streamBody(body: Readable, res: ServerResponse, stallMs: number): Promise<number> {
  if (res.destroyed) {
    // its 'close' came and went: nothing would end the wait below (stop 61 review)
    body.destroy();
    return 0;
  }
  let flushed = 0;
  let gone = false;
  let stalled = false;
  let wake: (() => void) | undefined;
  let over!: () => void;
  const closed = new Promise<void>((resolve) => {
    over = resolve;
    res.once('close', () => {
      gone = !res.writableFinished;
      if (gone) body.destroy(); // ends the iteration below; releases what the stream holds
      wake?.();
      resolve();
    });
  });
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (gone) break;
      const more = res.write(chunk, (err) => {
        if (!err) flushed += chunk.length;
      });
      if (!more && !gone) {
        // A client that stops reading would keep what the stream holds (a bundle's readers lock, which
        // delete and retention wait for) as long as it likes: one that takes nothing for `stallMs` is cut.
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          res.once('drain', resolve);
          timer = setTimeout(() => {
            stalled = true;
            // over without waiting for a 'close' that a response destroyed otherwise never sends
            gone = true;
            body.destroy();
            res.destroy();
            over();
            resolve();
          }, stallMs);
        });
        clearTimeout(timer);
        res.off('drain', wake!);
      }
    }
    if (!gone) res.end();
  } catch (err) {
    if (!gone) throw err;
  }
  await closed;
  if (stalled) stalledResponses.add(res);
  return flushed;
}

/** Responses the server cut because their client took no bytes for the stall bound (for the log). */
const stalledResponses = new WeakSet<ServerResponse>();

/**
 * Whether the server itself ended the request: Node answered 408 and destroyed the connection because
 * the request did not arrive in full within `requestTimeout` (the request then fails as if its client
 * had closed the connection).
 */
function serverTimedOut(req: IncomingMessage): boolean {
  return (req.socket.errored as { code?: unknown } | null)?.code === 'ERR_HTTP_REQUEST_TIMEOUT';
}

/** Errors that say the client closed the connection (not a failure of the request). */
function clientWentAway(err: unknown, res: ServerResponse): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return (
    res.destroyed &&
    !res.writableFinished &&
    ['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE'].includes(String(code))
  );
}

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: string): void {
  res.writeHead(status, { ...headers, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}) {
  send(
    res,
    status,
    { 'content-type': 'application/json; charset=utf-8', ...headers },
    `${JSON.stringify(value)}\n`,
  );
}

/**
 * The request target as the log shows it: the path, and the names of the query parameters without
 * their values (a `find?text=` may be a secret someone searches for; the API never shows one).
 */
export function loggedTarget(target: string | undefined): string {
  const raw = target ?? '/';
  const q = raw.indexOf('?');
  if (q < 0) return raw;
  const names = [...new Set([...new URLSearchParams(raw.slice(q + 1)).keys()])];
  return `${raw.slice(0, q)}${names.length ? `?${names.map((n) => `${encodeURIComponent(n)}=…`).join('&')}` : ''}`;
}

export function createApiServer(opts: ApiServerOptions): Server {
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const errors = opts.clientErrors ?? new ClientErrors();
  const graceMs = opts.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;

  /** Serves one request; resolves with what the log line says of its outcome (the status, and more). */
  async function handle(req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<string> {
    // HEAD is GET without the body (RFC 9110 §9.3.2): Node's response sends no body for it
    const head = req.method === 'HEAD';
    const method = head ? 'GET' : (req.method ?? 'GET');
    const host = req.headers.host;
    if (opts.loopbackHostsOnly && host !== undefined && !isLoopbackHostName(hostNameOf(host)))
      throw new ForbiddenError(
        `this daemon listens on loopback and answers only requests to localhost, 127.0.0.1 or [::1], not to Host ${JSON.stringify(host.slice(0, 100))} (DNS rebinding)`,
      );
    const dot = dotSegmentOf(req.url ?? '/');
    if (dot !== undefined)
      throw new InvalidInputError(
        `the request path has the dot segment ${JSON.stringify(dot)}: a path is taken as it is sent, never resolved (no "." or ".." segment, encoded or not)`,
      );
    const form = targetFormProblem(req.url ?? '/');
    if (form !== undefined)
      throw new InvalidInputError(
        `the request target is not a plain path: ${form}; a path is taken as it is sent, never parsed as a URL`,
      );
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      throw new InvalidInputError(`malformed request target ${JSON.stringify(req.url)}`);
    }
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
    // Before routing and before the token: a web page of another site reaches nothing of the API, even
    // of a daemon without a token (whose reads are open, and a diff against live memory is work).
    if (path === '/v1' || path.startsWith('/v1/')) {
      const why = crossSiteReason(req.headers);
      if (why !== undefined)
        throw new CrossSiteError(
          `the API refuses requests a browser sends from another site (${why}): only the console of this daemon's own origin, or a client that is not a browser, may call it`,
        );
    }
    let route: Route | undefined;
    let params: Record<string, string> = {};
    const allowed: string[] = [];
    for (const r of opts.routes) {
      const p = match(r.path, path);
      if (!p) continue;
      allowed.push(r.method);
      if (r.method === method && !route) {
        route = r;
        params = p;
      }
    }
    if (!route) {
      if (allowed.length)
        throw new MethodNotAllowedError(
          req.method ?? method,
          path,
          allowed.includes('GET') ? [...allowed, 'HEAD'] : allowed,
        );
      throw new RouteNotFoundError(`no route ${method} ${path}`);
    }
    const rights = rightsOf(opts, req.headers.authorization);
    if (route.auth !== 'open') {
      if (route.auth === 'write' && !opts.token) {
        throw new ForbiddenError(
          `${method} ${route.path} needs an API token: set server.token in the config or NEXO_MEMORY_TOKEN`,
        );
      }
      if (rights === 'none') {
        throw new UnauthorizedError('missing or wrong bearer token (Authorization: Bearer <token>)');
      }
      if (route.auth === 'write' && rights !== 'write') {
        throw new ForbiddenError(`${method} ${route.path} needs the write token; this token only reads`);
      }
    }
    const body = method === 'GET' ? {} : await readBody(req, limit, opts.tracker);
    const result = await route.handle({
      method,
      rights,
      path,
      params,
      query: url.searchParams,
      headers: req.headers,
      body,
    });
    exchange.deliver();
    const status = result.status ?? 200;
    if (!('stream' in result)) {
      if (res.destroyed) return `${status}, client went away before the response`;
      if ('json' in result) sendJson(res, status, result.json, result.headers);
      else if ('bytes' in result) {
        res.writeHead(status, { ...result.headers, 'content-length': String(result.bytes.length) });
        res.end(result.bytes);
      } else send(res, status, { 'content-type': result.contentType }, result.text);
      return String(status);
    }
    if (res.destroyed) {
      // the client left while the body was being prepared (an export's download): what the stream
      // holds (a readers lock, a scratch file) goes now, not with the process (stop 61 review)
      result.stream.destroy();
      return `${status}, client went away before the response`;
    }
    res.writeHead(status, result.headers);
    if (head) {
      // the headers say what a GET would send; its body is not made
      res.end();
      result.stream.destroy(); // releases what it holds, as a client that goes away does
      return String(status);
    }
    const flushed = await streamBody(result.stream, res, sendStallMs);
    const declared = Number(result.headers['content-length']);
    // Delivered: every declared byte went out, whether or not the client stayed for the end.
    if (res.writableFinished || flushed === declared) return String(status);
    const why = exchange.cut
      ? 'cut short by the shutdown'
      : stalledResponses.has(res)
        ? `cut by the server (the client took no bytes for ${sendStallMs} ms)`
        : 'client went away';
    return `${status}, ${why} after ${flushed}${Number.isNaN(declared) ? '' : ` of ${declared}`} bytes`;
  }

  // Receiving a request (at most 64 KiB of body) never takes long; responses (downloads) are not bounded.
  const requestTimeoutMs = opts.requestTimeoutMs ?? 60_000;
  const sendStallMs = opts.sendStallMs ?? 60_000;
  const server = createServer(
    {
      requestTimeout: requestTimeoutMs,
      headersTimeout: Math.min(30_000, requestTimeoutMs),
      // how often Node looks for requests past their time (its default, 30 s, would let one run 90 s)
      connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(requestTimeoutMs / 4))),
    },
    (req, res) => {
      const started = Date.now();
      const finish = (outcome: number | string) =>
        opts.log?.(`${req.method} ${loggedTarget(req.url)} ${outcome} ${Date.now() - started}ms`);
      // on every response, the refusal of a server shutting down included
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
      let done: () => void;
      try {
        done = opts.tracker.begin();
      } catch (err) {
        const e = errorBody(errors, err, `${req.method} ${loggedTarget(req.url)}`);
        req.resume();
        sendJson(res, e.status, e.body, { connection: 'close' });
        finish(e.status);
        return;
      }
      // One operation until its handling has settled and its response has closed: a client that leaves
      // does not end (for the shutdown) the operation it started.
      let handled = false;
      let closed = false;
      let grace: NodeJS.Timeout | undefined;
      const ended = () => {
        if (!handled || !closed) return;
        unwatch();
        done();
      };
      // Shutting down, a response being sent (its operation over) has the grace to reach its client;
      // then its connection is closed: the shutdown waits for operations, never long for a client.
      const exchange: Exchange = {
        delivering: false,
        cut: false,
        deliver() {
          exchange.delivering = true;
          if (!opts.tracker.closed) return;
          if (!res.headersSent) res.setHeader('connection', 'close');
          grace ??= setTimeout(() => {
            exchange.cut = true;
            res.destroy();
          }, graceMs);
        },
      };
      const unwatch = opts.tracker.onClose(() => {
        if (exchange.delivering) exchange.deliver();
      });
      res.once('close', () => {
        closed = true;
        clearTimeout(grace);
        ended();
      });
      handle(req, res, exchange)
        .then(finish, (err: unknown) => {
          // Too slow to arrive: the server answered 408 and closed the connection (Node does, not a route).
          if (serverTimedOut(req))
            return finish(
              `408, timed out by the server (the request was not received in full within ${requestTimeoutMs} ms)`,
            );
          // The client left (reading its request body, say): nothing failed here, and nothing can be sent.
          if (clientWentAway(err, res)) return finish('client went away');
          exchange.deliver();
          const e = errorBody(errors, err, `${req.method} ${loggedTarget(req.url)}`);
          if (res.headersSent) {
            res.destroy(err instanceof Error ? err : undefined);
          } else {
            const extra: Record<string, string> = {};
            if (e.status === 401) extra['www-authenticate'] = 'Bearer';
            if (err instanceof MethodNotAllowedError) extra.allow = err.allowed.join(', ');
            // A body not read to its end (oversized, or still arriving when the shutdown began): close
            // the connection instead. Others are drained.
            if (err instanceof PayloadTooLargeError || err instanceof ShuttingDownError)
              extra.connection = 'close';
            else req.resume();
            sendJson(res, e.status, e.body, extra);
          }
          finish(e.status);
        })
        .finally(() => {
          handled = true;
          ended();
        });
    },
  );
  server.on('clientError', (err, socket) => refuseUnparsed(err, socket, errors, requestTimeoutMs, opts.log));
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (maxConnections > 0) {
    server.maxConnections = maxConnections;
    let closed = 0;
    let loggedAt = Number.NEGATIVE_INFINITY;
    server.on('drop', () => {
      closed++;
      if (performance.now() - loggedAt < DROP_LOG_MS) return;
      opts.log?.(
        `(connection closed) ${closed} connection${closed === 1 ? '' : 's'} over the limit of ${maxConnections} at once (NEXO_MEMORY_SERVE_MAX_CONNECTIONS)`,
      );
      closed = 0;
      loggedAt = performance.now();
    });
  }
  return server;
}

/**
 * A request Node's parser refused before any route saw it (headers over 16 KiB, a malformed request
 * line or header, a request not received in time): answered as every other failure is, a JSON error
 * with the security headers, and logged. (Node's own answer was a bare status line, unlogged.)
 * A connection reset, or a response already begun, is just closed.
 */
function refuseUnparsed(
  err: Error & { code?: string },
  socket: Duplex,
  errors: ClientErrors,
  requestTimeoutMs: number,
  log: ((line: string) => void) | undefined,
): void {
  const open = socket as Duplex & { _httpMessage?: { headersSent?: boolean } };
  if (err.code === 'ECONNRESET' || !socket.writable || open._httpMessage?.headersSent) {
    socket.destroy();
    return;
  }
  const [status, reason, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', "the request's headers are over the 16 KiB the daemon reads"]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', `the request was not received in full within ${requestTimeoutMs} ms`]
        : [400, 'Bad Request', `the request is not HTTP the daemon can read (${err.code ?? 'malformed'})`];
  const body = `${JSON.stringify({ error: errors.report(new InvalidInputError(message), 'unparsed request') })}\n`;
  const headers = {
    ...SECURITY_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    connection: 'close',
  };
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  // as Node does: written, then the connection destroyed with the error (which the route's handler of
  // a request already handed to it reads: serverTimedOut)
  socket.write(`HTTP/1.1 ${status} ${reason}\r\n${head}\r\n${body}`);
  socket.destroy(err);
  // a request already handed to its route (its body too slow) is logged there, with its method and path
  if (!open._httpMessage) log?.(`(unparsed request) ${status}, ${message}`);
}
