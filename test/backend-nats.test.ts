// The NATS JetStream backend against a real 3-node nats-server cluster (started once for this file,
// buckets with 3 replicas): the backend conformance suite; a node killed during a large save; the
// majority killed (STORE_UNREACHABLE, nothing half-visible, success once the nodes are back); an
// interrupted save; wrong credentials (STORE_AUTH); a missing bucket (STORE_MISSING).

import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { Backend } from '../src/backend/backend.js';
import { NATS_CHUNK_SIZE, openNatsBackend } from '../src/backend/nats.js';
import type { NatsBackendOptions } from '../src/backend/remote.js';
import { backendConformance, code, collect, hexName, listAll } from './helpers/backend-conformance.js';
import { type NatsCluster, startAuthServer, startNatsCluster } from './helpers/nats-cluster.js';

let cluster: NatsCluster;
before(async () => {
  cluster = await startNatsCluster();
});
after(async () => {
  await cluster?.stop();
});

const FAST = { attempts: 4, baseDelayMs: 50, maxDelayMs: 400 } as const;

function options(bucket: string, extra: Partial<NatsBackendOptions> = {}): NatsBackendOptions {
  return { servers: cluster.urls, bucket, replicas: 3, create: true, timeoutMs: 3000, retry: FAST, ...extra };
}

const bucketOf = new WeakMap<Backend, string>();

async function open(bucket: string, extra: Partial<NatsBackendOptions> = {}): Promise<Backend> {
  const b = await openNatsBackend(options(bucket, extra));
  bucketOf.set(b, bucket);
  return b;
}

/** Deletes a repository's streams (the object store and the lock KV). */
async function dropBucket(bucket: string): Promise<void> {
  const nc = await connect({ servers: cluster.urls });
  try {
    const jsm = await jetstreamManager(nc);
    for (const s of [`OBJ_${bucket}`, `KV_${bucket}-locks`]) await jsm.streams.delete(s).catch(() => {});
  } finally {
    await nc.close();
  }
}

const fresh = () => `t-${randomUUID().slice(0, 8)}`;

backendConformance('nats (3-node cluster, R3)', {
  make: async () => open(fresh()),
  reopen: async (b) => open(bucketOf.get(b)!, { create: false }),
  teardown: async (b) => dropBucket(bucketOf.get(b)!),
});
