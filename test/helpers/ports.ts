// Test helper: TCP ports for servers a test stops and starts again on the same port (a NATS node killed
// and restarted, a broker that goes away and comes back). They are chosen below the kernel's ephemeral
// range (net.ipv4.ip_local_port_range), which it never hands out by itself: a port released while its
// server is down cannot be taken meanwhile by another test's bind to port 0, nor become the local port
// of another process's outgoing connection, as a port from that range could (stop 48). All the ports of
// one call are held until all are chosen, so they differ.

import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

/** The lowest port of the kernel's ephemeral range (32768 when it cannot be read). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 2048 ? low : 32768;
  } catch {
    return 32768;
  }
}

/** Binds `port` on loopback; the server, or undefined when it is taken. */
async function hold(port: number): Promise<Server | undefined> {
  const srv = createServer();
  srv.listen(port, '127.0.0.1');
  try {
    await Promise.race([once(srv, 'listening'), once(srv, 'error').then(([err]) => Promise.reject(err))]);
    return srv;
  } catch {
    srv.close();
    return undefined;
  }
}

/** `count` distinct ports below the ephemeral range that were free a moment ago. */
export async function stablePorts(count: number): Promise<number[]> {
  const low = 10_000;
  const high = ephemeralLow();
  const held: Server[] = [];
  try {
    for (let tries = 0; held.length < count; tries++) {
      if (tries > 100 * count) throw new Error(`no ${count} free ports between ${low} and ${high}`);
      const port = low + Math.floor(Math.random() * (high - low));
      if (held.some((s) => (s.address() as { port: number }).port === port)) continue;
      const srv = await hold(port);
      if (srv) held.push(srv);
    }
    return held.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
  }
}
