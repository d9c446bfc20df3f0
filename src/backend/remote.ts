// Owns the contract between the repository's remote backends (backend/nats.ts, backend/s3.ts) and the
// code that opens them (backend/open.ts): their options and the factory signature. Types only, so the
// CLI and library load a remote client library only when a remote repository is used.

import type { Backend } from './backend.js';

/** Observes a backend's requests (metrics: bytes, requests and errors per backend). */
export interface BackendObserver {
  /** One request ended: `op` is save/load/stat/list/remove; `bytes` moved (up for save, down for load). */
  request(op: 'save' | 'load' | 'stat' | 'list' | 'remove', outcome: 'ok' | 'error', bytes: number): void;
  /** A transient failure that will be retried after `delayMs`. */
  retry?(op: string, attempt: number, delayMs: number, reason: string): void;
}

/** Retries of transient failures (connection reset, timeout, 500/503, no JetStream leader yet). */
export interface RetryOptions {
  /** Attempts in all, first included (default 5). */
  readonly attempts?: number;
  /** First delay, ms; doubles per attempt with full jitter (default 200). */
  readonly baseDelayMs?: number;
  /** Longest delay, ms (default 5000). */
  readonly maxDelayMs?: number;
}

/** `nats://host:port[,host:port…]/bucket`: packs and manifests in a JetStream object store, locks and small metadata in a KV bucket. */
export interface NatsBackendOptions {
  /** nats://host:port (or tls://…) of one or more servers of the cluster. */
  readonly servers: readonly string[];
  /** Names the repository: the object store and KV buckets derive their names from it. */
  readonly bucket: string;
  /** JetStream replicas of the buckets when they are created (default 1; 3 on a 3-node cluster). */
  readonly replicas?: number;
  /** Create the buckets when missing (the first snapshot into a new repository); otherwise STORE_MISSING. */
  readonly create?: boolean;
  readonly user?: string;
  readonly password?: string;
  readonly token?: string;
  /** A .creds file (JWT + NKey seed). */
  readonly credsFile?: string;
  /** Per request, ms (default 10000). */
  readonly timeoutMs?: number;
  readonly retry?: RetryOptions;
  readonly observer?: BackendObserver;
}

/** `s3://bucket/prefix`: every object under `prefix/<type>/<name>` of one bucket. */
export interface S3BackendOptions {
  readonly bucket: string;
  /** Key prefix without leading or trailing slash ('' = the bucket's root). */
  readonly prefix: string;
  /** Default: the SDK's chain (AWS_REGION, profile), else us-east-1. */
  readonly region?: string;
  /** Custom endpoint (MinIO, Ceph RGW, R2, a local server); the SDK's AWS_ENDPOINT_URL(_S3) also work. */
  readonly endpoint?: string;
  /** Path-style addressing (http://host/bucket/key), needed by most S3-compatible servers. */
  readonly forcePathStyle?: boolean;
  /** Static credentials; when absent the SDK's standard credential chain is used. Never printed. */
  readonly credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Objects at least this big are uploaded in parts (default 16 MiB, part size 8 MiB). */
  readonly multipartThreshold?: number;
  /** Ranged GETs of one load run in parallel up to this many (default 4). */
  readonly parallelReads?: number;
  readonly timeoutMs?: number;
  readonly retry?: RetryOptions;
  readonly observer?: BackendObserver;
}

export type OpenNatsBackend = (opts: NatsBackendOptions) => Promise<Backend>;
export type OpenS3Backend = (opts: S3BackendOptions) => Promise<Backend>;
