// Test helper: a local S3-compatible server (the `s3rver` package, in this process) on a free loopback
// port with a temporary directory, started once per test file, and the options that reach it path-style
// with its fixed credentials. s3rver checks the access key id but not SigV4 signatures, ignores
// `If-None-Match` on writes and does not implement AbortMultipartUpload (docs/remote.md).

import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3BackendOptions } from '../../src/backend/remote.js';

interface S3rverInstance {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}
type S3rverClass = new (opts: Record<string, unknown>) => S3rverInstance;

export interface S3Server {
  /** http://127.0.0.1:<port> */
  readonly endpoint: string;
  readonly port: number;
  /** The server's directory: `<dir>/<bucket>/…` holds the objects and `._S3rver_uploads` the parts. */
  readonly dir: string;
  /** Options reaching `bucket` through `endpoint` (default: the server's own). */
  options(bucket: string, prefix: string, endpoint?: string): S3BackendOptions;
  stop(): Promise<void>;
}

/** The access key s3rver knows (it does not check secrets). */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export async function startS3Server(buckets: readonly string[]): Promise<S3Server> {
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass;
  const dir = mkdtempSync(join(tmpdir(), 'nexo-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory: dir,
    silent: true,
    configureBuckets: buckets.map((name) => ({ name })),
  });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    port,
    dir,
    options: (bucket, prefix, via = endpoint) => ({
      bucket,
      prefix,
      endpoint: via,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { ...S3RVER_CREDENTIALS },
    }),
    async stop() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
