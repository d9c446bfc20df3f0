// `nexo-memory mcp`: the agent tool as an MCP server on stdio, for one agent. stdout carries only the
// protocol (warnings go to stderr; a line that is not JSON-RPC gets its JSON-RPC error response). Ends
// when stdin closes or on SIGTERM/SIGINT/SIGHUP, after the tool call in progress has finished, with exit
// status 0. The signals are caught from the program's first line (cli/stop-signals.ts): one that comes
// while the server starts ends it before it serves, with status 0 too. A second signal exits 1 at once.

import { snapshotRedactDefault } from '../../config/runtime.js';
import { loadIdentities } from '../../crypto/age.js';
import { createAgentToolServer } from '../../mcp/server.js';
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
          log: (line) => process.stderr.write(`nexo-memory mcp: ${line}\n`),
        });
        // Stopped while starting: nothing was read from stdin, no tool ran; end without serving.
        await stopSignalsDelivered();
        if (signalled) return 0;
        const transport = stdioTransport((m) => process.stderr.write(`warning: ${m}\n`));
        await server.connect(transport);
        guardToolCalls(transport);
        await new Promise<void>((resolve) => {
          const end = () => resolve();
          process.stdin.once('end', end);
          process.stdin.once('close', end);
          // a client that no longer reads the answers (its end of stdout closed: EPIPE) is gone too: the
          // server stopped only when stdin closed, and took the snapshots it was still sent (stop 57)
          process.stdout.once('error', () => {
            process.stderr.write('nexo-memory mcp: stdout closed: the client reads no answer; stopping\n');
            end();
          });
          transport.onclose = end;
          void stopped.then(end);
        });
        await tracker.close();
        await server.close();
        return 0;
      });
      process.exit(process.exitCode ?? 0);
    });
}
