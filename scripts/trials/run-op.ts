// Runs one trial operation (scripts/trials/ops.ts) in its own process: prints `ready`, waits for a line
// on stdin (so the driver can start several at the same instant), runs it, prints `done <json>`.
// Args: <operation> <agent paths as JSON>

import { TRIAL_OPS } from './ops.js';

const [name, json] = process.argv.slice(2) as [string, string];
const op = TRIAL_OPS[name];
if (!op) throw new Error(`unknown trial operation ${name}`);
process.stdout.write('ready\n');
await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
const result = await op.run(JSON.parse(json));
process.stdout.write(`done ${JSON.stringify(result)}\n`);
process.exit(0);
