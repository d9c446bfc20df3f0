// Test helpers for events: a real nats-server on 127.0.0.1 (random port, read from its ports file),
// stopped after the test, and a subscriber that collects what the broker delivers. A missing nats-server
// fails the test that needs it (CI installs it: .ci/run), never skips it.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { until } from './wait.js';

export interface NatsServer {
  url: string;
  port: number;
  proc: ChildProcess;
  /** SIGKILL and wait for the exit (the broker "goes away"). */
  kill(): Promise<void>;
}

/** Starts nats-server on 127.0.0.1 (`port` 0: a free one; `extra`: more options) and waits until it listens. */
export async function startNats(t: TestContext, port = 0, extra: string[] = []): Promise<NatsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'nexo-nats-'));
  const proc = spawn(
    'nats-server',
    ['-a', '127.0.0.1', '-p', port ? String(port) : '-1', '--ports_file_dir', dir, ...extra],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let spawnError: Error | undefined;
  proc.on('error', (err) => {
    spawnError = err;
  });
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  const kill = async () => {
    if (spawnError === undefined && proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await once(proc, 'exit');
    }
  };
  t.after(async () => {
    await kill();
    process.off('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
  });
  const portsFile = join(dir, `nats-server_${proc.pid}.ports`);
  for (;;) {
    if (existsSync(portsFile)) {
      try {
        const url = JSON.parse(readFileSync(portsFile, 'utf8')).nats[0] as string;
        return { url, port: Number(new URL(url).port), proc, kill };
      } catch {
        // written but not complete yet
      }
    }
    if (spawnError)
      throw new Error(`nats-server did not start (${spawnError.message}): these tests need it on PATH`);
    if (proc.exitCode !== null) throw new Error(`nats-server exited ${proc.exitCode} before it listened`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Collector {
  nc: NatsConnection;
  messages: Array<{ subject: string; data: Record<string, unknown> }>;
  /** Resolves once `n` messages arrived (no deadline: the runner's test timeout guards a hang). */
  waitFor(n: number): Promise<Array<{ subject: string; data: Record<string, unknown> }>>;
}

/** Subscribes to `subject` (wildcards allowed) and collects every message as parsed JSON. */
export async function collect(
  t: TestContext,
  url: string,
  subject: string,
  auth: { user?: string; pass?: string } = {},
): Promise<Collector> {
  const nc = await connect({ servers: url, ...auth });
  t.after(() => nc.close().catch(() => {}));
  const messages: Collector['messages'] = [];
  const sub = nc.subscribe(subject);
  void (async () => {
    for await (const m of sub) messages.push({ subject: m.subject, data: m.json() });
  })();
  await nc.flush();
  return {
    nc,
    messages,
    async waitFor(n) {
      await until(() => messages.length >= n, Boolean, 10);
      return messages.slice(0, n);
    },
  };
}

/**
 * A broker that is down: a port nothing listens on, port 1 (never the port of a server started and
 * killed, which another test process can bind meanwhile).
 */
export function deadBrokerUrl(): string {
  return 'nats://127.0.0.1:1';
}

/** A broker that accepts connections and never says a word (`nats://` URL): connecting to it hangs. */
export async function silentBroker(t: TestContext): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  const { port } = server.address() as { port: number };
  return `nats://127.0.0.1:${port}`;
}
