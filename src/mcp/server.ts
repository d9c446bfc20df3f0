// Owns the agent tool over MCP (official SDK): `memory_snapshot` with the original's parameters and
// result (§15: optional `label` ≤ 200 characters and `redact_secrets`, no other key; result `snapshot_id`,
// `bundle_path`, `bundle_size_bytes`, `bundle_sha256`, `created_at_ms`, `redactions_applied`,
// `encrypted`, `warnings` when it did not find a part: the memdir or the database directory, its
// place named by its role, and `memdir_skipped`; created_by `tool`), and the read-only `memory_list`,
// `memory_verify`, `memory_diff` (its detail bounded in all), and `memory_ls`, `memory_cat`,
// `memory_find` (memory as of a snapshot; values shown redacted). Calls wait their turn (turns.ts).
// One server serves one agent (and tenant), fixed when it starts: a tool never names another agent, and
// no result carries a figure of the store as a whole (`added_bytes`: deduplication across agents and
// tenants would tell the agent what others stored).
// Restore is never exposed. Invalid arguments are tool errors and do nothing.

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { MAX_LS_ENTRIES } from '../browse/types.js';
import { DIFF_PATCH_MAX_BYTES, isLiveRef } from '../diff/diff.js';
import { ForbiddenError, InvalidInputError } from '../model/errors.js';
import { MAX_LABEL_CHARS } from '../model/ids.js';
import type { SnapshotRequest } from '../model/types.js';
import { ClientErrors } from '../server/client-errors.js';
import type { OperationTracker } from '../server/tracker.js';
import type { LocalSnapshotter } from '../snapshotter/local.js';
import { PACKAGE_VERSION } from '../util/version.js';
import { CancelledBeforeTurn, Turns } from './turns.js';

export const TOOL_CREATED_BY = 'tool';

/**
 * The agent's read calls (list, verify, diff of two snapshots, ls, cat, find) that run at once; the others
 * wait their turn. Each holds what it reads (a find, ~60 MB on a 41 MB agent): 60 concurrent finds
 * took 3.5 GB and ran no faster than one after the other (stop 57).
 */
export const READS_AT_ONCE = 2;

/**
 * The bound on a detailed diff's patches, sample rows and state values in all, for the agent: its reply
 * goes into a model's context (one of 150 changed 200 KB files was 63 MB, stop 57). What does not fit
 * is cut or left out, and the diff says so (`detail_truncated`).
 */
export const AGENT_DIFF_DETAIL_MAX_BYTES = 256 * 1024;

/**
 * The snapshots `memory_list` gives when the call names no `limit`: the newest ones (10,000 were a
 * 7.8 MB reply, and 20 such calls at once took 619 MB, stop 57); `total` counts them all.
 */
export const MEMORY_LIST_DEFAULT_LIMIT = 100;

/**
 * The most array elements and object members one call's `arguments` may hold (the SDK's
 * `maxToolInputElements`); a tool takes at most six. 300,000 unknown keys were a 3.2 MB error text
 * naming each one (stop 57).
 */
export const MAX_TOOL_INPUT_ELEMENTS = 64;

/** The longest text of the SDK's refusal kept in the agent's error (and the log's line). */
export const REFUSAL_MAX_CHARS = 1000;

/**
 * The SDK's texts for a call it refused before any tool ran (`McpError`'s `-32602 Invalid params`): a tool
 * it does not have (or disabled), arguments over MAX_TOOL_INPUT_ELEMENTS, arguments its schema refuses.
 * Not its `Output validation error`, also -32602, which comes after a tool ran: not the client's doing.
 */
const SDK_REFUSAL = /^MCP error -32602: (?=Tool |Invalid arguments for tool |Input validation error: )/;

/** Each server's form of a refused call (refusedCallResult). */
const refusals = new WeakMap<McpServer, (tool: string, text: string) => CallToolResult>();

/**
 * The tool error for a call the SDK refused before any tool ran (a tool it does not have, arguments
 * its schema refuses), given the SDK's result text; undefined for any other text. It takes the form of
 * the other tool errors, `<tool> failed: … (INVALID_INPUT, error id …)`, its text bounded, and the
 * server's log gets its line: the SDK's own text named each unknown key, without bound, and had no error
 * id for the operator to find (stop 57, "left"). `tool` is the call's tool name as the client sent it
 * ('' when not known): a name the server does not have is not repeated as the failed tool's.
 */
export function refusedCallResult(server: McpServer, tool: string, text: string): CallToolResult | undefined {
  const prefix = SDK_REFUSAL.exec(text);
  return prefix ? refusals.get(server)?.(tool, text.slice(prefix[0].length)) : undefined;
}

export interface AgentToolOptions {
  snapshotter: LocalSnapshotter;
  agentId: string;
  tenant: string;
  /** age identity file to verify and diff encrypted bundles. */
  identityPath?: string;
  /** `redact_secrets` when a call omits it (config `redaction.enabled`, default false: an exact snapshot). */
  redactDefault: boolean;
  /** Every tool call runs as a tracked operation, so shutdown waits for a snapshot in progress. */
  tracker: OperationTracker;
  /** `enabled: false` in the config: `memory_snapshot` is refused (FORBIDDEN), as the CLI and the API refuse writes. */
  readOnly?: boolean;
  /** The server's log (stderr): the whole message of each failed call, under the error id the agent is given. */
  log?: (line: string) => void;
}

const snapshotResult = {
  snapshot_id: z.string(),
  bundle_path: z.string(),
  bundle_size_bytes: z.number(),
  bundle_sha256: z.string(),
  created_at_ms: z.number(),
  redactions_applied: z.boolean(),
  encrypted: z.boolean(),
  /** What the snapshot did not find (no memdir, no database directory), the host's places by their role. */
  warnings: z.array(z.string()).optional(),
  /** Memory files the snapshot did not take (a symlink, a special file), by their path in the memdir. */
  memdir_skipped: z.array(z.object({ path: z.string(), reason: z.string() })).optional(),
  /** How many memory files were not taken, when `memdir_skipped` lists only the first MAX_SKIPPED_SHOWN. */
  memdir_skipped_total: z.number().optional(),
};

/**
 * The largest answer a tool gives, as written on the wire (its text and its structured content): the
 * SDK's client reader gives up at 10 MiB and closes the connection, which ends this server (stop 62
 * review: a page of control characters, a table's rows, a find over many snapshots all went past it).
 * A larger answer is the call's failure (INVALID_INPUT), saying to ask for less; the server stays up.
 */
export const MAX_REPLY_BYTES = 4 * 1024 * 1024;
/** The memory files not taken that a snapshot's answer names (the rest counted). */
const MAX_SKIPPED_SHOWN = 100;

function ok(value: Record<string, unknown>): CallToolResult {
  const text = JSON.stringify(value, null, 2);
  // as it goes on the wire: the text as a JSON string, and the structured content beside it
  const bytes = Buffer.byteLength(JSON.stringify(text)) + Buffer.byteLength(JSON.stringify(value));
  if (bytes > MAX_REPLY_BYTES)
    throw new InvalidInputError(
      `the answer is ${bytes} bytes, more than the ${MAX_REPLY_BYTES} a tool answers with: ask for less ` +
        '(a smaller limit, a page of a file, a narrower path, a query that matches less, a later since)',
    );
  return { content: [{ type: 'text', text }], structuredContent: value };
}

/** A tool error: the client's form of the failure (client-errors.ts: no host path, the error id of the log line). */
function failed(errors: ClientErrors, tool: string, err: unknown): CallToolResult {
  const e = errors.report(err, tool);
  return {
    content: [{ type: 'text', text: `${tool} failed: ${e.message} (${e.code}, error id ${e.error_id})` }],
    isError: true,
  };
}

export function createAgentToolServer(o: AgentToolOptions): McpServer {
  const s = o.snapshotter;
  const server = new McpServer(
    { name: 'nexo-memory', version: PACKAGE_VERSION },
    { maxToolInputElements: MAX_TOOL_INPUT_ELEMENTS },
  );
  const errors = new ClientErrors({ hostPaths: s.hostPaths(), ...(o.log ? { log: o.log } : {}) });
  // the server's tools, by name: registered through `tool`, which notes each
  const tools = new Set<string>();
  const tool = ((name: string, ...rest: unknown[]) => {
    tools.add(name);
    return (server.registerTool as (...args: unknown[]) => unknown).call(server, name, ...rest);
  }) as McpServer['registerTool'];
  refusals.set(server, (tool, text) => {
    const cut = text.length > REFUSAL_MAX_CHARS ? text.length - REFUSAL_MAX_CHARS : 0;
    const said = cut ? `${text.slice(0, REFUSAL_MAX_CHARS)}… (${cut} more characters)` : text;
    // an unknown name is the client's text: not repeated as the failed tool's name
    return failed(errors, tools.has(tool) ? tool : 'tools/call', new InvalidInputError(said));
  });
  const run = async (tool: string, body: () => Promise<Record<string, unknown>>): Promise<CallToolResult> => {
    try {
      return ok(await o.tracker.run(body));
    } catch (err) {
      // no response goes to a cancelled call (the SDK's rule): nothing to tell, nothing to log
      if (err instanceof CancelledBeforeTurn)
        return { content: [{ type: 'text', text: `${tool}: ${err.message}` }], isError: true };
      return failed(errors, tool, err);
    }
  };
  // The calls that close the agent's write gate (a snapshot, a diff against live memory) run one at a
  // time, in the order they came: 40 concurrent diffs of live memory from one agent queued 40 gate
  // closures, and the runtime's writers waited up to 8.8 s between two batches (stop 50). One at a
  // time, a writer waits for at most the one in progress. The reads wait in a queue of their own.
  // A queued call runs nothing once the server shuts down or its client cancels it (stop 57: a
  // SIGTERM ran all six queued snapshots before the server ended).
  const gate = new Turns(1, o.tracker);
  const reads = new Turns(READS_AT_ONCE, o.tracker);

  tool(
    'memory_snapshot',
    {
      title: 'Snapshot my memory',
      description:
        'Captures your whole memory right now (memory directory with its git history, the SQLite ' +
        'databases, extractor state) into one verifiable bundle and returns its id, size and SHA-256; ' +
        'memdir_skipped lists memory files it could not take (a symlink, a special file; the first 100, ' +
        'memdir_skipped_total counting them when there are more). ' +
        'Use it sparingly, e.g. before a risky change of your memory. Restoring a snapshot is an ' +
        'operator action and is not available as a tool.',
      inputSchema: z.strictObject({
        label: z.string().max(MAX_LABEL_CHARS).optional().describe('short note on why (≤ 200 characters)'),
        redact_secrets: z
          .boolean()
          .optional()
          .describe(
            'redact secrets the redaction rules find; redactions_applied in the result says the snapshot went through the rules (true even when nothing matched)',
          ),
      }),
      outputSchema: snapshotResult,
      annotations: {
        readOnlyHint: false,
        destructiveHint: false,
        idempotentHint: false,
        openWorldHint: false,
      },
    },
    async (args, extra) =>
      run('memory_snapshot', async () => {
        if (o.readOnly)
          throw new ForbiddenError(
            'memory.snapshot.enabled is false: the agent tool does not change the store',
          );
        // `redactions_applied` in the result: the snapshot was scanned by the redaction policy.
        const request: SnapshotRequest = {
          agentId: o.agentId,
          tenant: o.tenant,
          ...(args.label !== undefined ? { label: args.label } : {}),
          createdBy: TOOL_CREATED_BY,
          redact: args.redact_secrets ?? o.redactDefault,
        };
        const meta = await gate.run(() => s.snapshot(request), extra.signal);
        return {
          snapshot_id: meta.id,
          bundle_path: meta.bundle_path,
          bundle_size_bytes: meta.bundle_size_bytes,
          bundle_sha256: meta.bundle_sha256,
          created_at_ms: meta.created_at_ms,
          redactions_applied: meta.redactions_applied,
          encrypted: meta.encrypted,
          // a snapshot that holds no memory files (or no databases) says so to the agent too, naming the
          // places by their role, as a tool error does
          ...(meta.warnings?.length ? { warnings: meta.warnings.map((w) => errors.scrub(w)) } : {}),
          // a memory file not taken is not restored either: the agent is told, as the CLI's JSON tells
          ...(meta.memdir_skipped?.length
            ? {
                memdir_skipped: meta.memdir_skipped.slice(0, MAX_SKIPPED_SHOWN),
                ...(meta.memdir_skipped.length > MAX_SKIPPED_SHOWN
                  ? { memdir_skipped_total: meta.memdir_skipped.length }
                  : {}),
              }
            : {}),
        };
      }),
  );

  tool(
    'memory_list',
    {
      title: 'List my memory snapshots',
      description: `Your memory snapshots, newest first: id, label, time, size, who made it; the ${MEMORY_LIST_DEFAULT_LIMIT} newest unless limit says otherwise (total counts them all). Read-only.`,
      inputSchema: z.strictObject({
        limit: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .optional()
          .describe(`at most this many, newest first (default ${MEMORY_LIST_DEFAULT_LIMIT})`),
      }),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (args, extra) =>
      run('memory_list', async () => {
        // without added_bytes: what a snapshot added depends on what the whole repository held, every
        // agent's and tenant's data; told to an agent (a model a prompt may drive), it says whether
        // bytes the agent wrote exist anywhere in the store (stop 45). Its own sizes stay.
        const all = await reads.run(() => s.list(o.agentId, o.tenant), extra.signal);
        const shown = all
          .slice(0, args.limit ?? MEMORY_LIST_DEFAULT_LIMIT)
          .map(({ added_bytes: _store, ...meta }) => meta);
        return { snapshots: shown, total: all.length };
      }),
  );

  tool(
    'memory_verify',
    {
      title: 'Verify one of my memory snapshots',
      description:
        'Checks a snapshot of yours end to end (seals, every hash, layout; deep: database integrity and ' +
        "git history; the signature against the host's trusted keys) and reports status verified, " +
        'damaged, untrusted (a signature this host requires is missing or not by a trusted key) or ' +
        'incomplete. Read-only.',
      inputSchema: z.strictObject({
        snapshot_id: z
          .string()
          .min(4)
          .max(64)
          .describe(
            'snapshot id, a unique prefix (≥ 4 hex digits; hyphens ignored), or "latest" (the newest)',
          ),
        deep: z.boolean().optional().describe('also check database integrity and the git history'),
      }),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (args, extra) =>
      run('memory_verify', async () => {
        // The snapshotter's one trust rule (trusted keys, require_signature), as the CLI and the API.
        const report = await reads.run(
          () =>
            s.verifySnapshot(o.agentId, o.tenant, args.snapshot_id, {
              deep: args.deep === true,
              ...(o.identityPath ? { decryptIdentity: o.identityPath } : {}),
            }),
          extra.signal,
        );
        return { ...report };
      }),
  );

  tool(
    'memory_diff',
    {
      title: 'Compare two of my memory snapshots',
      description:
        'What changed between two snapshots of yours, or a snapshot and your live memory ("live"): ' +
        'commits, files and lines, rows per table, state. Read-only.',
      inputSchema: z.strictObject({
        a: z.string().min(1).max(64).describe('snapshot id, unique prefix, "latest", or "live"'),
        b: z.string().min(1).max(64).describe('snapshot id, unique prefix, "latest", or "live"'),
        detail: z
          .boolean()
          .optional()
          .describe(
            `include text patches, sample rows and state values (at most ${AGENT_DIFF_DETAIL_MAX_BYTES / 1024} KiB of them in all; detail_truncated says when some were cut)`,
          ),
      }),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (args, extra) =>
      run('memory_diff', async () => {
        const compare = () =>
          s.diff({
            agentId: o.agentId,
            tenant: o.tenant,
            a: args.a,
            b: args.b,
            detail: args.detail === true,
            maxPatchBytes: DIFF_PATCH_MAX_BYTES,
            maxDetailBytes: AGENT_DIFF_DETAIL_MAX_BYTES,
            ...(o.identityPath ? { decryptIdentity: o.identityPath } : {}),
          });
        const diff = await (isLiveRef(args.a) || isLiveRef(args.b) ? gate : reads).run(compare, extra.signal);
        return { ...diff };
      }),
  );

  const identity = o.identityPath ? { decryptIdentity: o.identityPath } : {};
  const snapshotId = z
    .string()
    .min(4)
    .max(64)
    .describe('snapshot id, a unique prefix (≥ 4 hex digits; hyphens ignored), or "latest" (the newest)');

  tool(
    'memory_ls',
    {
      title: 'List my memory as of a snapshot',
      description:
        'The tree of one of your snapshots at a path: "" (memdir/, sqlite/, state/), "memdir/…" (your ' +
        'memory files as they were, with sizes), "sqlite" (your databases), "sqlite/<db>" (its tables ' +
        `with row counts). Entries sorted by name, at most limit (default and at most ${MAX_LS_ENTRIES}) ` +
        'per call: when truncated, call again with cursor = next_cursor for the next page (total counts ' +
        'them all). Read-only.',
      inputSchema: z.strictObject({
        snapshot_id: snapshotId,
        path: z.string().max(4096).optional().describe('browse path, default the root'),
        limit: z
          .number()
          .int()
          .min(1)
          .max(MAX_LS_ENTRIES)
          .optional()
          .describe(`entries per page (default and at most ${MAX_LS_ENTRIES})`),
        cursor: z.string().min(1).max(32768).optional().describe('next_cursor of the page before'),
      }),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (args, extra) =>
      run('memory_ls', async () => ({
        ...(await reads.run(
          () =>
            s.ls(o.agentId, o.tenant, args.snapshot_id, args.path ?? '', {
              limit: args.limit ?? MAX_LS_ENTRIES,
              ...(args.cursor !== undefined ? { cursor: args.cursor } : {}),
              ...identity,
            }),
          extra.signal,
        )),
      })),
  );

  tool(
    'memory_cat',
    {
      title: 'Read my memory as of a snapshot',
      description:
        'One of your memory files as it was in a snapshot ("memdir/<file>", bytes paged by offset and ' +
        'limit), a state value ("state/extract_cursor"), or a table\'s rows ("sqlite/<db>/<table>", paged ' +
        'by offset and limit). Secrets are shown redacted. Read-only.',
      inputSchema: z.strictObject({
        snapshot_id: snapshotId,
        path: z
          .string()
          .min(1)
          .max(4096)
          .describe('memdir/<file>, state/<key>, sqlite/<db> or sqlite/<db>/<table>'),
        offset: z.number().int().min(0).optional().describe('bytes (file) or rows (table) to skip'),
        limit: z.number().int().min(1).optional().describe('bytes (≤ 1 MiB) or rows (≤ 1000, default 100)'),
      }),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (args, extra) =>
      run('memory_cat', async () => ({
        ...(await reads.run(
          () =>
            s.cat(o.agentId, o.tenant, args.snapshot_id, args.path, {
              ...(args.offset !== undefined ? { offset: args.offset } : {}),
              ...(args.limit !== undefined ? { limit: args.limit } : {}),
              ...identity,
            }),
          extra.signal,
        )),
      })),
  );

  tool(
    'memory_find',
    {
      title: 'When did I learn or forget this?',
      description:
        'Which of your snapshots hold a text (or a regex match), in which memory file, table row or state ' +
        'value, the first snapshot where it appears and the first where it is gone. Read-only.',
      inputSchema: z.strictObject({
        text: z.string().min(1).max(1000).optional().describe('plain text, case-sensitive'),
        regex: z
          .string()
          .min(1)
          .max(1000)
          .optional()
          .describe(
            'JavaScript regular expression, no flags; no backreferences or lookaround; a counted repetition of a group at most 16 ((?:ab){16}), of one character at most 256 in all ([0-9]{20})',
          ),
        since_ms: z
          .number()
          .int()
          .min(0)
          .max(8.64e15)
          .optional()
          .describe('only snapshots taken at or after this time'),
      }),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async (args, extra) =>
      run('memory_find', async () => ({
        ...(await reads.run(
          () =>
            s.find({
              agentId: o.agentId,
              tenant: o.tenant,
              ...(args.text !== undefined ? { text: args.text } : {}),
              ...(args.regex !== undefined ? { regex: args.regex } : {}),
              ...(args.since_ms !== undefined ? { sinceMs: args.since_ms } : {}),
              ...identity,
            }),
          extra.signal,
        )),
      })),
  );

  return server;
}
