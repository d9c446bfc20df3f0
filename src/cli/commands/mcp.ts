// `nexo-memory mcp`: the agent tool as an MCP server on stdio, for one agent. stdout carries only the
// protocol (warnings go to stderr; a line that is not JSON-RPC gets its JSON-RPC error response). Ends
// when stdin closes or on SIGTERM/SIGINT/SIGHUP, after the tool call in progress has finished, with exit
// status 0. The signals are caught from the program's first line (cli/stop-signals.ts): one that comes
// while the server starts ends it before it serves, with status 0 too. A second signal exits 1 at once.

import { snapshotRedactDefault } from '../../config/runtime.js';
import { loadIdentities } from '../../crypto/age.js';
import { createAgentToolServer, refusedCallResult } from '../../mcp/server.js';
import { guardToolCalls, stdioTransport } from '../../mcp/transport.js';
import { validateAgentId, validateTenant } from '../../model/ids.js';
import { OperationTracker } from '../../server/tracker.js';
import { Command } from '../commander.js';
import { identityFrom, loadFlagsConfig, runCommand, snapshotterFrom } from '../context.js';
import { onStopSignal, stopSignalsDelivered } from '../stop-signals.js';
import {
  agentOption,
  configOption,
  identityOption,
  memdirRootOption,
  sqliteRootOption,
  stateRootOption,
  tenantOption,
} from './options.js';

export function mcpCommand() {
  return new Command('mcp')
    .description(
      'serve the agent tool over MCP on stdio: memory_snapshot, memory_list, memory_verify, memory_diff, memory_ls, memory_cat, memory_find (never restore)',
    )
    .addOption(agentOption())
    .addOption(tenantOption())
    .addOption(stateRootOption())
    .addOption(memdirRootOption())
    .addOption(sqliteRootOption())
    .addOption(configOption())
    .addOption(identityOption())
    .addHelpText(
      'after',
      `
stdout carries only the MCP protocol (so no --json); warnings go to stderr.

Examples:
  nexo-memory mcp --agent ana --config /etc/nexo/memory.yaml
  an MCP client's server entry:
  {"command": "nexo-memory", "args": ["mcp", "--agent", "ana", "--config", "/etc/nexo/memory.yaml"]}`,
    )
    .action(async (opts) => {
      // Set first: a signal caught while the modules loaded is handed over now, one during start-up later.
      let signalled = false;
      let stop = () => {};
      const stopped = new Promise<void>((resolve) => {
        stop = resolve;
      });
      onStopSignal((signal) => {
        if (signalled) {
          process.stderr.write(
            `nexo-memory mcp: ${signal} again: exiting at once (leftovers are cleaned by the next operation)\n`,
          );
          process.exit(1);
        }
        signalled = true;
        stop();
      });
      // stderr carries only the server's log lines: one it cannot write (a full disk, a closed pipe) is
      // dropped, where main.ts's listener threw it and ended the process in the middle of a call
      process.stderr.removeAllListeners('error');
      process.stderr.on('error', () => {});
      const logLine = (line: string) => process.stderr.write(`nexo-memory mcp: ${line}\n`);
      let stdoutFailed = false;
      await runCommand({ ...opts, progress: false }, async () => {
        const agentId = validateAgentId(opts.agent);
        const tenant = validateTenant(opts.tenant);
        const tracker = new OperationTracker('the agent tool');
        const identityPath = identityFrom(opts);
        // read once now: a path that names no identity fails the start, not every encrypted read later
        if (identityPath) loadIdentities(identityPath);
        const cfg = loadFlagsConfig(opts)?.snapshot ?? {};
        const server = createAgentToolServer({
          snapshotter: snapshotterFrom(opts),
          agentId,
          tenant,
          tracker,
          redactDefault: snapshotRedactDefault(cfg),
          readOnly: cfg.enabled === false,
          ...(identityPath ? { identityPath } : {}),
          log: logLine,
        });
        // Stopped while starting: nothing was read from stdin, no tool ran; end without serving.
        await stopSignalsDelivered();
        if (signalled) return 0;
        const transport = stdioTransport((m) => process.stderr.write(`warning: ${m}\n`));
        await server.connect(transport);
        guardToolCalls(transport, (tool, text) => refusedCallResult(server, tool, text));
        let status = 0;
        await new Promise<void>((resolve) => {
          const end = () => resolve();
          process.stdin.once('end', end);
          process.stdin.once('close', end);
          // An answer that cannot be written ends the server as stdin closing does (the call in progress
          // finishes, the queued ones run nothing). A client that no longer reads the answers (its end of
          // stdout closed: EPIPE) is gone: status 0; before stop 57 the server took the snapshots it was
          // still sent. Any other error (stdout on a full disk: ENOSPC) is this side's: status 1, where
          // main.ts's listener threw it and ended the process in the middle of the call (stop 58).
          process.stdout.removeAllListeners('error');
          process.stdout.on('error', (err: NodeJS.ErrnoException) => {
            if (stdoutFailed) return;
            stdoutFailed = true;
            if (err.code === 'EPIPE') logLine('stdout closed: the client reads no answer; stopping');
            else {
              status = 1;
              logLine(`stdout: ${err.message}: the answers cannot be written; stopping (IO)`);
            }
            end();
          });
          transport.onclose = end;
          void stopped.then(end);
        });
        await tracker.close();
        await server.close();
        return status;
      });
      process.exit(process.exitCode ?? 0);
    });
}
