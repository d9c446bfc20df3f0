// Test helpers for the NATS backend: a real 3-node nats-server cluster with JetStream on loopback (ports
// below the ephemeral range, which a killed node gets back when restarted: helpers/ports.ts; one config
// file, store directory and ports directory per node), started once per test file; a node has started
// when its own process wrote its ports file, and the cluster when every node still runs once a meta
// leader is elected (else it is stopped, its directory removed, and started again on other ports).
// Nodes can be killed (SIGKILL) and restarted on their ports and store directories. The bench
// (bench/remote.ts) starts its cluster here too. Also a single server that requires a user and
// password (the wrong-credentials case).

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stablePorts } from './ports.js';

/** Fails loudly (never skips) when nats-server is not installed. */
export function requireNatsServer(): void {
  if (spawnSync('nats-server', ['--version']).status !== 0)
    throw new Error('nats-server is not installed (the NATS backend tests need it; .ci/run installs it)');
}

export interface NatsNode {
  readonly name: string;
  readonly url: string;
  readonly running: boolean;
  kill(): Promise<void>;
  start(): Promise<void>;
  /** What this node's monitor says of stream `stream`'s replication (leader, replicas), for a failure's message. */
  streamCluster(stream: string): Promise<unknown>;
}

export interface NatsCluster {
  readonly nodes: NatsNode[];
  readonly urls: string[];
  /**
   * Resolves once a JetStream meta leader is elected among the running nodes and every running node is
   * healthy (`/healthz`: its JetStream assets are current); rejects after `ms`.
   */
  waitForMetaLeader(ms?: number): Promise<void>;
  stop(): Promise<void>;
}

/** The parts of a node's `/jsz` monitor answer these helpers read. */
type Jsz = {
  meta_cluster?: { leader?: string };
  account_details?: Array<{ stream_detail?: Array<{ name: string; cluster?: unknown }> }>;
};

class Node implements NatsNode {
  private proc: ChildProcess | undefined;
  /** The end of the running (or last) process's stderr, for a failure's message. */
  stderr = '';
  readonly url: string;
  constructor(
    readonly name: string,
    private readonly config: string,
    port: number,
    readonly monitor: number,
    /** Where each process of this node writes `nats-server_<pid>.ports` once it listens. */
    private readonly portsDir: string,
  ) {
    this.url = `nats://127.0.0.1:${port}`;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /**
   * Starts the node's process and resolves once that process listens: judged by the process itself (the
   * ports file it writes once its listeners are up, naming its client port), never by whatever answers
   * on its ports (another process may hold one of them).
   */
  async start(): Promise<void> {
    if (this.running) return;
    const proc = spawn('nats-server', ['-c', this.config, '--ports_file_dir', this.portsDir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.stderr = '';
    proc.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    this.proc = proc;
    const portsFile = join(this.portsDir, `nats-server_${proc.pid}.ports`);
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (!this.running) throw new Error(`nats-server ${this.name} exited: ${this.stderr}`);
      if (existsSync(portsFile)) {
        let ports: { nats?: string[] } | undefined;
        try {
          ports = JSON.parse(readFileSync(portsFile, 'utf8'));
        } catch {
          // written but not complete yet
        }
        if (ports) {
          if (!ports.nats?.includes(this.url))
            throw new Error(
              `nats-server ${this.name} listens on ${ports.nats}, not ${this.url}: ${this.stderr}`,
            );
          return;
        }
      }
      if (Date.now() > deadline) throw new Error(`nats-server ${this.name} did not start: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await once(proc, 'exit');
    }
  }

  async healthy(): Promise<boolean> {
    try {
      return (
        (await fetch(`http://127.0.0.1:${this.monitor}/healthz`, { signal: AbortSignal.timeout(2000) }))
          .status === 200
      );
    } catch {
      return false;
    }
  }

  async streamCluster(stream: string): Promise<unknown> {
    const j = await this.jsz('?accounts=true&streams=true');
    if (!j) return { error: 'the monitor did not answer' };
    const found = j.account_details?.flatMap((a) => a.stream_detail ?? []).find((d) => d.name === stream);
    return { meta: j.meta_cluster, stream: found?.cluster ?? null };
  }

  /** The monitor's `/jsz` (with `query`), or null when it does not answer. */
  async jsz(query = ''): Promise<Jsz | null> {
    try {
      const r = await fetch(`http://127.0.0.1:${this.monitor}/jsz${query}`, {
        signal: AbortSignal.timeout(2000),
      });
      return (await r.json()) as Jsz;
    } catch {
      return null;
    }
  }
}

const live = new Set<Node>();
process.once('exit', () => {
  for (const n of live) void n.kill();
});

/** Waits for every start, then throws the first failure (none is left running unawaited). */
async function allSettledOrThrowNodes(starts: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(starts);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/**
 * Starts a 3-node JetStream cluster on loopback and waits for its meta leader. `logToFile`: each node
 * logs to `<node>.log` in its directory instead of stderr (for a caller that blocks its event loop for
 * long, as the bench's synchronous CLI runs do, and so would not drain the pipe).
 */
export async function startNatsCluster(
  size = 3,
  opts: { logToFile?: boolean; maxFileStore?: string } = {},
): Promise<NatsCluster> {
  requireNatsServer();
  // Ports are free when chosen but not held: a test file running beside this one can take one first,
  // and the node then cannot listen. Start again on other ports (a CI run hung 10 minutes there
  // before the monitor checks had timeouts).
  for (let attempt = 1; ; attempt++) {
    try {
      return await startClusterOnce(size, opts);
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

async function startClusterOnce(
  size: number,
  opts: { logToFile?: boolean; maxFileStore?: string },
): Promise<NatsCluster> {
  const free = await stablePorts(3 * size);
  const ports = Array.from({ length: size }, (_, i) => ({
    client: free[3 * i]!,
    route: free[3 * i + 1]!,
    monitor: free[3 * i + 2]!,
  }));
  const dir = mkdtempSync(join(tmpdir(), 'nexo-nats-cluster-'));
  const routes = ports.map((p) => `nats-route://127.0.0.1:${p.route}`);
  const nodes = ports.map((p, i) => {
    const name = `n${i + 1}`;
    const store = join(dir, name);
    mkdirSync(store);
    const config = join(dir, `${name}.conf`);
    writeFileSync(
      config,
      [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${p.client}`,
        `http: 127.0.0.1:${p.monitor}`,
        ...(opts.logToFile ? [`log_file: ${JSON.stringify(join(dir, `${name}.log`))}`] : []),
        `jetstream { store_dir: ${JSON.stringify(store)}, max_memory_store: 64MB, max_file_store: ${opts.maxFileStore ?? '1GB'} }`,
        `cluster { name: nexo, listen: 127.0.0.1:${p.route}, routes: [${routes.filter((_, k) => k !== i).join(', ')}] }`,
        '',
      ].join('\n'),
    );
    const portsDir = join(dir, `${name}-ports`);
    mkdirSync(portsDir);
    const node = new Node(name, config, p.client, p.monitor, portsDir);
    live.add(node);
    return node;
  });
  const stopAll = async () => {
    await Promise.all(nodes.map((n) => n.kill()));
    for (const n of nodes) live.delete(n);
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  };
  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((n) => n.url),
    async waitForMetaLeader(ms = 30_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const running = nodes.filter((n) => n.running);
        const leader = await Promise.all(running.map((n) => n.jsz()));
        if (leader.some((j) => j?.meta_cluster?.leader)) {
          const healthy = await Promise.all(running.map((n) => n.healthy()));
          if (healthy.every(Boolean)) return;
        }
        if (Date.now() > deadline) throw new Error('the NATS cluster elected no JetStream meta leader');
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop: stopAll,
  };
  // Any failure here stops every node and removes the directory: the caller starts again on other ports.
  try {
    await allSettledOrThrowNodes(nodes.map((n) => n.start()));
    await cluster.waitForMetaLeader();
    // A node that ended meanwhile (its port taken after all?) leaves a cluster smaller than asked.
    const down = nodes.filter((n) => !n.running);
    if (down.length > 0)
      throw new Error(`nats-server ${down.map((n) => `${n.name} exited: ${n.stderr}`).join('; ')}`);
  } catch (err) {
    await stopAll();
    throw err;
  }
  return cluster;
}

/**
 * One JetStream server that requires `user`/`password`; the user `reader` (password `reader`) may use the
 * JetStream API but publish nothing into object store buckets.
 */
export async function startAuthServer(
  user: string,
  password: string,
): Promise<{ url: string; stop(): Promise<void> }> {
  requireNatsServer();
  const [client, monitor] = (await stablePorts(2)) as [number, number];
  const dir = mkdtempSync(join(tmpdir(), 'nexo-nats-auth-'));
  const config = join(dir, 'auth.conf');
  writeFileSync(
    config,
    [
      `listen: 127.0.0.1:${client}`,
      `http: 127.0.0.1:${monitor}`,
      `jetstream { store_dir: ${JSON.stringify(join(dir, 'js'))} }`,
      'authorization { users: [',
      `  { user: ${JSON.stringify(user)}, password: ${JSON.stringify(password)} },`,
      '  { user: reader, password: reader, permissions: { publish: { deny: ["$O.>", "$KV.>"] } } }',
      '] }',
      '',
    ].join('\n'),
  );
  const node = new Node('auth', config, client, monitor, dir);
  live.add(node);
  try {
    await node.start();
  } catch (err) {
    await node.kill();
    live.delete(node);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: node.url,
    async stop() {
      await node.kill();
      live.delete(node);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Closes a test's own client, waiting at most 5 s: a client whose server was killed under it can leave
 * close() pending forever (a CI run hung there after the stream leader was killed).
 */
export async function closeClient(nc: { close(): Promise<void> }): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    nc.close().catch(() => {}),
    new Promise<void>((r) => {
      timer = setTimeout(r, 5_000);
    }),
  ]);
  clearTimeout(timer);
}
