// Test helper: an `s3://` backend factory for backend/open.ts (`remoteFactories.s3`) whose store is a
// local directory (`<dir>/<bucket>/<prefix>`) behind FaultyBackend, so a test can run the CLI in this
// process against a "remote" repository — the cache, retries and metering wrappers of backend/open.ts
// included — and inject transient failures (an `error` fault throws TransientStoreError).

import { join } from 'node:path';
import { TransientStoreError } from '../../src/backend/backend.js';
import { type FaultRule, FaultyBackend } from '../../src/backend/faulty.js';
import { LocalBackend } from '../../src/backend/local.js';
import type { OpenS3Backend } from '../../src/backend/remote.js';

/**
 * The factory: each bucket/prefix a directory under `dir`, every request subject to `faults`
 * (FaultRule objects; an `error` fault needs no `error` function: it throws TransientStoreError).
 */
export function faultyS3(dir: string, faults: readonly unknown[]): () => Promise<OpenS3Backend> {
  const rules = faults as FaultRule[];
  return async () => async (opts) => {
    const location = `s3://${opts.bucket}${opts.prefix ? `/${opts.prefix}` : ''}`;
    return new FaultyBackend(new LocalBackend(join(dir, opts.bucket, opts.prefix)), {
      rules: rules.map((r) =>
        r.fault.kind === 'error'
          ? {
              ...r,
              fault: {
                ...r.fault,
                error: (c) =>
                  new TransientStoreError(`injected: connection reset (${c.op} #${c.call})`, {
                    backend: 's3',
                    location,
                  }),
              },
            }
          : r,
      ),
    });
  };
}
