// Test helper: a fault-injecting HTTP proxy on a free loopback port in front of an upstream HTTP server.
// Requests pass through unchanged unless a rule matches: then the proxy resets the connection, answers
// with an S3 error (status, code) or a given XML answer, holds the answer back forever (stall), trickles
// the answer in small pieces (slow), flips a byte of the body (flip), or cuts the body short — closing
// the connection (truncate) or with a Content-Length that matches the short body (lie), or rewrites the
// upstream's answer (rewrite). Every request
// is recorded; rules fire a given number of times.

import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type ProxyFault =
  /** Destroys the client's connection before anything is forwarded. */
  | { readonly kind: 'reset' }
  /** Forwards the request, then destroys the client's connection instead of answering (a lost answer). */
  | { readonly kind: 'reset-after' }
  /** Answers `status` with an S3 error document of `code` (nothing is forwarded). */
  | { readonly kind: 'error'; readonly status: number; readonly code: string }
  /**
   * Answers `status` with `body` as XML, or as `contentType` (nothing is forwarded): plays a call the
   * upstream lacks, or an endpoint that is not S3.
   */
  | {
      readonly kind: 'answer';
      readonly status: number;
      readonly body: string;
      readonly contentType?: string;
      readonly headers?: Readonly<Record<string, string>>;
    }
  /** Never answers (the client must time out). */
  | { readonly kind: 'stall' }
  /** Forwards and passes the answer on in pieces of `piece` bytes, `delayMs` apart. */
  | { readonly kind: 'slow'; readonly piece: number; readonly delayMs: number }
  /** Forwards, passes headers and the first `keep` bytes of the body on, then closes the connection. */
  | { readonly kind: 'truncate'; readonly keep: number }
  /** Forwards, then answers with only the first `keep` bytes and a Content-Length of `keep`. */
  | { readonly kind: 'lie'; readonly keep: number }
  /** Forwards and passes the whole answer on with one byte of its body flipped (the middle one). */
  | { readonly kind: 'flip' }
  /**
   * Forwards, then answers with the body `rewrite` makes of the upstream's (as text), with the upstream's
   * status or `status`: a store whose listings name what the test wants.
   */
  | {
      readonly kind: 'rewrite';
      readonly rewrite: (body: string) => string;
      readonly status?: number;
      /** Headers of the upstream's answer left out (`content-length`: none is sent then). */
      readonly drop?: readonly string[];
    };

export interface ProxyRule {
  readonly method?: string;
  /** Matches the request's path and query. */
  readonly path?: RegExp;
  /** Matches the request's Range header. */
  readonly range?: RegExp;
  /** How many matching requests pass before it fires (default 0). */
  readonly skip?: number;
  /** How many matching requests it fires on (default 1). */
  readonly times?: number;
  readonly fault: ProxyFault;
}

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly fault?: ProxyFault['kind'];
  /** The request's If-None-Match header. */
  readonly ifNoneMatch?: string;
}

export interface FaultProxy {
  readonly endpoint: string;
  /** Every request seen, in order. */
  readonly seen: SeenRequest[];
  inject(rule: ProxyRule): void;
  /** Drops the rules that have not fired yet and forgets the requests seen. */
  reset(): void;
  /** How many times faults of `kind` fired. */
  fired(kind: ProxyFault['kind']): number;
  stop(): Promise<void>;
}

function s3Error(res: ServerResponse, status: number, code: string): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected ${code}</Message><RequestId>proxy</RequestId></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const rules: Array<{ rule: ProxyRule; skip: number; left: number }> = [];
  const seen: SeenRequest[] = [];
  const sockets = new Set<Socket>();

  function take(req: IncomingMessage): ProxyFault | undefined {
    for (const r of rules) {
      if (r.left <= 0) continue;
      if (r.rule.method && r.rule.method !== req.method) continue;
      if (r.rule.path && !r.rule.path.test(req.url ?? '')) continue;
      if (r.rule.range && !r.rule.range.test(req.headers.range ?? '')) continue;
      if (r.skip > 0) {
        r.skip--;
        continue;
      }
      r.left--;
      return r.rule.fault;
    }
    return undefined;
  }

  /** Forwards `req` upstream; resolves with the upstream answer (its body not yet read). */
  function forward(req: IncomingMessage): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const up = request(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        resolve,
      );
      up.on('error', reject);
      // a client that gave up part way (its timeout) leaves no request open upstream: s3rver's close
      // waits for every open request, and the file's end waited for s3rver (stop 64)
      req.on('close', () => {
        if (!req.complete) up.destroy();
      });
      req.pipe(up);
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const fault = take(req);
    const inm = req.headers['if-none-match'];
    seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      ...(fault ? { fault: fault.kind } : {}),
      ...(inm ? { ifNoneMatch: inm } : {}),
    });
    if (fault?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'error') {
      req.resume();
      await once(req, 'end');
      s3Error(res, fault.status, fault.code);
      return;
    }
    if (fault?.kind === 'answer') {
      req.resume();
      await once(req, 'end');
      res.writeHead(fault.status, {
        'content-type': fault.contentType ?? 'application/xml',
        'content-length': Buffer.byteLength(fault.body),
        ...fault.headers,
      });
      res.end(fault.body);
      return;
    }
    if (fault?.kind === 'stall') {
      req.resume();
      return; // the client gives up and closes; stop() destroys what is left
    }
    const up = await forward(req);
    if (fault?.kind === 'reset-after') {
      up.resume();
      await once(up, 'end');
      req.socket.destroy();
      return;
    }
    const body: Buffer[] = [];
    for await (const c of up) body.push(c as Buffer);
    const whole = Buffer.concat(body);
    const headers = { ...up.headers };
    if (fault?.kind === 'truncate' || fault?.kind === 'lie') {
      const keep = Math.min(fault.keep, whole.length);
      if (fault.kind === 'lie') headers['content-length'] = String(keep);
      res.writeHead(up.statusCode ?? 502, headers);
      if (fault.kind === 'lie') {
        res.end(whole.subarray(0, keep));
        return;
      }
      res.write(whole.subarray(0, keep), () => {
        setTimeout(() => req.socket.destroy(), 20);
      });
      return;
    }
    if (fault?.kind === 'rewrite') {
      const body = Buffer.from(fault.rewrite(whole.toString('utf8')), 'utf8');
      delete headers['transfer-encoding'];
      headers['content-length'] = String(body.length);
      for (const h of fault.drop ?? []) delete headers[h];
      res.writeHead(fault.status ?? up.statusCode ?? 502, headers);
      res.end(body);
      return;
    }
    res.writeHead(up.statusCode ?? 502, headers);
    if (fault?.kind === 'flip' && whole.length > 0) whole[whole.length >> 1]! ^= 0x5a;
    if (fault?.kind === 'slow') {
      for (let off = 0; off < whole.length; off += fault.piece) {
        if (res.destroyed) return;
        res.write(whole.subarray(off, off + fault.piece));
        await sleep(fault.delayMs);
      }
      res.end();
      return;
    }
    res.end(whole);
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      req.socket.destroy();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    seen,
    inject(rule) {
      rules.push({ rule, skip: rule.skip ?? 0, left: rule.times ?? 1 });
    },
    reset() {
      rules.length = 0;
      seen.length = 0;
    },
    fired: (kind) => seen.filter((s) => s.fault === kind).length,
    async stop() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close').catch(() => {});
    },
  };
}
