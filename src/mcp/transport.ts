// Owns the agent tool's stdio transport: the SDK's, which reports a line it cannot read only to its
// `onerror`, plus the JSON-RPC 2.0 error responses a client is owed for such a line: `-32700 Parse
// error` for a line that is not JSON, `-32600 Invalid Request` for JSON that is not a JSON-RPC
// message, both with `id: null` (the id cannot be known; the SDK's HTTP transport answers the same).
// The line is skipped and the server keeps serving.

import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { ErrorCode, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

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

/** The SDK's stdio transport, answering unreadable lines; `onWarning` hears of each. */
export function stdioTransport(onWarning: (message: string) => void): StdioServerTransport {
  const transport = new StdioServerTransport();
  // Set before the server connects: the SDK's Protocol keeps it and calls it first.
  transport.onerror = (err) => {
    const response = unreadableLineResponse(err);
    if (!response) return;
    onWarning(`mcp: ${(response as unknown as { error: { message: string } }).error.message}`);
    void transport.send(response).catch(() => {});
  };
  return transport;
}
