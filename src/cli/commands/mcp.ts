// `nexo-memory mcp`: the agent tool as an MCP server on stdio, for one agent. stdout carries only the
// protocol (warnings go to stderr; a line that is not JSON-RPC gets its JSON-RPC error response). Ends
// when stdin closes or on SIGTERM/SIGINT, after the tool call in progress has finished, with exit
// status 0.

import { snapshotRedactDefault } from '../../config/runtime.js';
import { createAgentToolServer } from '../../mcp/server.js';
import { stdioTransport } from '../../mcp/transport.js';
import { validateAgentId, validateTenant } from '../../model/ids.js';
import { OperationTracker } from '../../server/tracker.js';
import { Command } from '../commander.js';
import { identityFrom, loadFlagsConfig, runCommand, snapshotterFrom } from '../context.js';
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
Example (an MCP client's server entry):
  {"command": "nexo-memory", "args": ["mcp", "--agent", "ana", "--config", "/etc/nexo/memory.yaml"]}`,
    )
    .action(async (opts) => {
      await runCommand({ ...opts, progress: false }, async () => {
        const agentId = validateAgentId(opts.agent);
        const tenant = validateTenant(opts.tenant);
        const tracker = new OperationTracker();
        const identityPath = identityFrom(opts);
        const cfg = loadFlagsConfig(opts)?.snapshot ?? {};
        const server = createAgentToolServer({
          snapshotter: snapshotterFrom(opts),
          agentId,
          tenant,
          tracker,
          redactDefault: snapshotRedactDefault(cfg),
          readOnly: cfg.enabled === false,
          ...(identityPath ? { identityPath } : {}),
        });
        const transport = stdioTransport((m) => process.stderr.write(`warning: ${m}\n`));
        await server.connect(transport);
        await new Promise<void>((resolve) => {
          const end = () => resolve();
          process.stdin.once('end', end);
          process.stdin.once('close', end);
          transport.onclose = end;
          process.once('SIGTERM', end);
          process.once('SIGINT', end);
        });
        await tracker.close();
        await server.close();
        return 0;
      });
      process.exit(process.exitCode ?? 0);
    });
}
