// Owns the agent tool's stdio transport: the SDK's, which reports a line it cannot read only to its
// `onerror`, plus the JSON-RPC 2.0 error responses a client is owed for such a line: `-32700 Parse
// error` for a line that is not JSON, `-32600 Invalid Request` for JSON that is not a JSON-RPC
// message, both with `id: null` (the id cannot be known; the SDK's HTTP transport answers the same).
// The line is skipped and the server keeps serving. So is a line longer than MAX_LINE_BYTES (`-32600`):
// the SDK's reader closed the transport at 10 MiB, which ended the server, status 0, unanswered (stop
// 50): lines reach it only whole, through LineGuard, which drops what is longer.

import { Transform, type TransformCallback } from 'node:stream';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { type CallToolResult, ErrorCode, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

/** The longest line read as a message (the SDK's reader gives up at 10 MiB, with what it holds). */
export const MAX_LINE_BYTES = 8 * 1024 * 1024;

/**
 * Passes on whole lines only, each at most `max` bytes (its newline aside); a longer line is dropped
 * as it comes, and `onTooLong` told once for it. What is held is the line in progress, at most `max`.
 */
export class LineGuard extends Transform {
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** In a line too long: dropping until its newline. */
  private dropping = false;
  /** The last byte held (a CR there may end the line). */
  private lastHeld: number | undefined;

  constructor(
    private readonly onTooLong: () => void,
    private readonly max = MAX_LINE_BYTES,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    let from = 0;
    while (from < chunk.length) {
      const nl = chunk.indexOf(0x0a, from);
      const complete = nl !== -1;
      const piece = chunk.subarray(from, complete ? nl : chunk.length);
      from = complete ? nl + 1 : chunk.length;
      if (!this.dropping) {
        // a CR that ends the line belongs to its newline (CRLF), not to its length; a line not ended
        // yet may still end in one
        const total = this.heldBytes + piece.length;
        const last = piece.length > 0 ? piece[piece.length - 1] : this.lastHeld;
        const length = complete && last === 0x0d ? total - 1 : total;
        if (length > (complete ? this.max : this.max + 1)) {
          this.held = [];
          this.heldBytes = 0;
          this.dropping = true;
          this.onTooLong();
        }
      }
      if (!this.dropping && piece.length > 0) {
        this.held.push(piece);
        this.heldBytes += piece.length;
        this.lastHeld = piece[piece.length - 1];
      }
      if (!complete) break;
      if (!this.dropping) this.push(Buffer.concat([...this.held, NEWLINE]));
      this.held = [];
      this.heldBytes = 0;
      this.lastHeld = undefined;
      this.dropping = false;
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    // a last line without its newline is no message for the SDK either; passed on as it came
    if (this.heldBytes > 0) this.push(Buffer.concat(this.held));
    done();
  }
}

const NEWLINE = Buffer.from('\n');

/** The JSON-RPC error response for an error the SDK's line reader raised, or undefined for any other. */
export function unreadableLineResponse(err: Error): JSONRPCMessage | undefined {
  const error =
    err instanceof SyntaxError
      ? { code: ErrorCode.ParseError, message: `Parse error: ${err.message}` }
      : err.name === 'ZodError'
        ? { code: ErrorCode.InvalidRequest, message: 'Invalid Request: not a JSON-RPC 2.0 message' }
        : undefined;
  // JSON-RPC 2.0 wants `id: null` here; the SDK's type leaves the id out instead.
  return error ? ({ jsonrpc: '2.0', id: null, error } as unknown as JSONRPCMessage) : undefined;
}

/**
 * The `-32602 Invalid params` response owed to a `tools/call` whose `arguments` is not an object
 * (`null`, an array, a string), or undefined for any other message. The SDK's own parsing
 * answered those `-32603 Internal error` with its schema's whole dump (stop 57).
 */
export function invalidToolCallResponse(m: JSONRPCMessage): JSONRPCMessage | undefined {
  const r = m as { method?: unknown; id?: unknown; params?: unknown };
  if (r.method !== 'tools/call' || r.id === undefined) return undefined;
  // (params that are not an object are no JSON-RPC request: the reader answers those -32600)
  const args = (r.params as { arguments?: unknown } | undefined)?.arguments;
  if (args === undefined || (typeof args === 'object' && args !== null && !Array.isArray(args)))
    return undefined;
  const error = { code: ErrorCode.InvalidParams, message: 'Invalid params: arguments must be an object' };
  return { jsonrpc: '2.0', id: r.id, error } as unknown as JSONRPCMessage;
}

/** Tool calls awaiting their answer that guardToolCalls remembers the tool name of (the oldest go first). */
const PENDING_CALLS_MAX = 1024;
/** The longest tool name remembered (ours are short; a longer one is no tool of ours: kept as ''). */
const TOOL_NAME_KEPT = 128;

/**
 * Passes each message the transport reads to the handler the server set (call after it connected),
 * except the tool calls invalidToolCallResponse answers. With `refused`, every tool error the SDK
 * sends goes through `refused`, which gives the form it goes out in, or none to leave it as it is
 * (server.ts refusedCallResult: the SDK's refusals of a call before any tool ran). `refused` is given
 * the call's tool name as the client sent it when the call is remembered, else '': a call is remembered
 * from its request to its answer or its cancellation (a cancelled call gets no answer), at most
 * PENDING_CALLS_MAX of them (the oldest go first) and names of at most TOOL_NAME_KEPT characters, so a
 * client's names never pile up (stop 58's review: 8 MB names of calls answered with an error were kept,
 * 1.2 GB for 150 of them); a call forgotten gets its form all the same, under `tools/call`.
 */
export function guardToolCalls(
  transport: StdioServerTransport,
  refused?: (tool: string, text: string) => CallToolResult | undefined,
): void {
  const handle = transport.onmessage;
  const pending = new Map<string | number, string>();
  const isId = (id: unknown): id is string | number => typeof id === 'string' || typeof id === 'number';
  transport.onmessage = (m: JSONRPCMessage) => {
    const invalid = invalidToolCallResponse(m);
    if (invalid) {
      void transport.send(invalid).catch(() => {});
      return;
    }
    const r = m as { method?: unknown; id?: unknown; params?: { name?: unknown; requestId?: unknown } };
    if (refused && r.method === 'tools/call' && isId(r.id)) {
      if (pending.size >= PENDING_CALLS_MAX) pending.delete(pending.keys().next().value!);
      const name = r.params?.name;
      pending.set(r.id, typeof name === 'string' && name.length <= TOOL_NAME_KEPT ? name : '');
    } else if (r.method === 'notifications/cancelled' && isId(r.params?.requestId))
      pending.delete(r.params.requestId);
    handle?.(m);
  };
  if (!refused) return;
  const send = transport.send.bind(transport);
  transport.send = (m: JSONRPCMessage) => {
    // a response (no method: a request of the server's own has ids of its own)
    const a = m as { id?: unknown; method?: unknown; result?: CallToolResult };
    if (a.method !== undefined || !isId(a.id)) return send(m);
    const tool = pending.get(a.id) ?? '';
    pending.delete(a.id);
    const text = a.result?.isError ? a.result.content?.[0] : undefined;
    const ours = text?.type === 'text' ? refused(tool, text.text) : undefined;
    return send(ours ? ({ ...m, result: ours } as JSONRPCMessage) : m);
  };
}

/**
 * The SDK's stdio transport over this process's stdin (through LineGuard) and stdout, answering
 * unreadable and too long lines; `onWarning` hears of each.
 */
export function stdioTransport(onWarning: (message: string) => void): StdioServerTransport {
  const guard = new LineGuard(() => {
    const message = `Invalid Request: a line longer than ${MAX_LINE_BYTES} bytes is not read`;
    onWarning(`mcp: ${message}`);
    const response = { jsonrpc: '2.0', id: null, error: { code: ErrorCode.InvalidRequest, message } };
    void transport.send(response as unknown as JSONRPCMessage).catch(() => {});
  });
  const transport = new StdioServerTransport(process.stdin.pipe(guard), process.stdout);
  // Set before the server connects: the SDK's Protocol keeps it and calls it first.
  transport.onerror = (err) => {
    const response = unreadableLineResponse(err);
    if (!response) return;
    onWarning(`mcp: ${(response as unknown as { error: { message: string } }).error.message}`);
    void transport.send(response).catch(() => {});
  };
  return transport;
}
