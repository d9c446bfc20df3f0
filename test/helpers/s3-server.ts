// Test helper: a local S3-compatible server (the `s3rver` package, in this process or in one of its own)
// on a free loopback port with a temporary directory, started once per test file, and the options that
// reach it path-style with its fixed credentials. s3rver checks the access key id but not SigV4 signatures, ignores
// `If-None-Match` on writes and does not implement AbortMultipartUpload (docs/remote.md).

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { S3BackendOptions } from '../../src/backend/remote.js';
import { outsideEnv } from './cli.js';
import { fixtureCommand, REPO } from './env.js';

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

interface FilesystemStorePrototype {
  putObject(object: { bucket: string; key: string; content: unknown; metadata: unknown }): Promise<unknown>;
  getResourcePath(bucket: string, key: string, resource: string): string;
  putMetadata(bucket: string, key: string, metadata: unknown, md5: string): Promise<void>;
  nexoWaitsForWrites?: true;
}

/**
 * s3rver's store answers a PUT before the object's file is written: it resolves when the body has gone
 * into the write stream (a Buffer: at once; a request: when it ended), not when the file is on disk,
 * and the stream truncates a replaced object's file as it opens. So a GET right after the answer can
 * find no object (404: seen once in CI under load, a conformance load right after a save), or a
 * replaced one cut short. The test server is made to take the whole body, then write the file, then
 * answer, as a real store does (a PUT whose body is cut off changes nothing).
 */
function waitForWrites(require: NodeJS.Require): void {
  const proto = (require('s3rver/lib/stores/filesystem.js') as { prototype: FilesystemStorePrototype })
    .prototype;
  if (proto.nexoWaitsForWrites) return;
  const streamed = proto.putObject;
  proto.putObject = async function (this: FilesystemStorePrototype, object) {
    let body: Buffer;
    if (Buffer.isBuffer(object.content)) body = object.content;
    else if (
      object.content &&
      typeof (object.content as AsyncIterable<Buffer>)[Symbol.asyncIterator] === 'function'
    ) {
      const chunks: Buffer[] = [];
      for await (const c of object.content as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
      body = Buffer.concat(chunks);
    } else return streamed.call(this, object);
    const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
    await mkdir(dirname(objectPath), { recursive: true });
    const staged = `${objectPath}.nexo-${process.pid}-${Math.random().toString(36).slice(2)}`;
    await writeFile(staged, body);
    await rename(staged, objectPath);
    const md5 = createHash('md5').update(body).digest('hex');
    await this.putMetadata(object.bucket, object.key, object.metadata, md5);
    return { size: body.length, md5 };
  };
  proto.nexoWaitsForWrites = true;
}

export async function startS3Server(buckets: readonly string[]): Promise<S3Server> {
  const require = createRequire(import.meta.url);
  waitForWrites(require);
  const S3rver = require('s3rver') as S3rverClass;
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

/**
 * The same server in a process of its own (test/fixtures/s3rver.ts) with OpenSSL's legacy provider:
 * s3rver encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 refuses otherwise (HTTP
 * 500 on any listing of more than 1000 keys). Stopped (SIGTERM) by `stop`.
 */
export async function startS3ServerProcess(buckets: readonly string[]): Promise<S3Server> {
  const child = spawn(process.execPath, [...fixtureCommand('s3rver.ts'), ...buckets], {
    cwd: REPO,
    env: { ...outsideEnv(), NODE_OPTIONS: '--openssl-legacy-provider' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  for await (const c of child.stdout) {
    out += String(c);
    if (out.includes('\n')) break;
  }
  const m = /^ready (http:\/\/127\.0\.0\.1:(\d+)) (\S+)/.exec(out);
  if (!m) {
    child.kill('SIGKILL');
    throw new Error(`s3rver did not start: ${out}`);
  }
  const endpoint = m[1]!;
  return {
    endpoint,
    port: Number(m[2]),
    dir: m[3]!,
    options: (bucket, prefix, via = endpoint) => ({
      bucket,
      prefix,
      endpoint: via,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { ...S3RVER_CREDENTIALS },
    }),
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      // s3rver's close waits for its open requests; one a dead client left must not hang the file
      const late = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(late);
    },
  };
}
