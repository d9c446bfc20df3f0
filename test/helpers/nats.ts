// Test helpers for events: a real nats-server on 127.0.0.1 (random port, read from its ports file),
// stopped after the test, and a subscriber that collects what the broker delivers.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';

export const HAS_NATS = spawnSync('nats-server', ['--version']).status === 0;

export interface NatsServer {
  url: string;
  port: number;
  proc: ChildProcess;
  /** SIGKILL and wait for the exit (the broker "goes away"). */
  kill(): Promise<void>;
}

/** Starts nats-server on 127.0.0.1 (`port` 0: a free one) and waits until it listens. */
export async function startNats(t: TestContext, port = 0): Promise<NatsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'nexo-nats-'));
  const proc = spawn(
    'nats-server',
    ['-a', '127.0.0.1', '-p', port ? String(port) : '-1', '--ports_file_dir', dir],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  const kill = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
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
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (existsSync(portsFile)) {
      try {
        const url = JSON.parse(readFileSync(portsFile, 'utf8')).nats[0] as string;
        return { url, port: Number(new URL(url).port), proc, kill };
      } catch {
        // written but not complete yet
      }
    }
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error('nats-server did not start');
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Collector {
  nc: NatsConnection;
  messages: Array<{ subject: string; data: Record<string, unknown> }>;
  /** Resolves once `n` messages arrived (rejects after `timeoutMs`). */
  waitFor(n: number, timeoutMs?: number): Promise<Array<{ subject: string; data: Record<string, unknown> }>>;
}

/** Subscribes to `subject` (wildcards allowed) and collects every message as parsed JSON. */
export async function collect(t: TestContext, url: string, subject: string): Promise<Collector> {
  const nc = await connect({ servers: url });
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
    async waitFor(n, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < n) {
        if (Date.now() > deadline)
          throw new Error(
            `expected ${n} messages, got ${messages.length}: ${messages.map((m) => m.subject)}`,
          );
        await new Promise((r) => setTimeout(r, 10));
      }
      return messages.slice(0, n);
    },
  };
}

/** A TCP port nothing listens on (a broker that is down): a server started and killed. */
export async function deadBrokerUrl(t: TestContext): Promise<string> {
  const s = await startNats(t);
  await s.kill();
  return s.url;
}
