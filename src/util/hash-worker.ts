// Owns hashing a whole file on a worker thread, so a reader that is busy decompressing and hashing
// other bytes on the main thread gets the file's SHA-256 in parallel (two cores instead of one).

import { Worker } from 'node:worker_threads';

const SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const h = require('node:crypto').createHash('sha256');
const fd = fs.openSync(workerData.path, 'r');
const buf = Buffer.allocUnsafe(1 << 20);
let size = 0;
try {
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    h.update(n === buf.length ? buf : buf.subarray(0, n));
    size += n;
  }
  parentPort.postMessage({ size, sha256: h.digest('hex') });
} catch (err) {
  parentPort.postMessage({ error: String(err && err.message || err) });
} finally {
  fs.closeSync(fd);
}
`;

/** SHA-256 and size of the file at `path`, computed on a worker thread. */
export function sha256FileOffThread(path: string): Promise<{ size: number; sha256: string }> {
  return new Promise((resolvePromise, reject) => {
    const worker = new Worker(SOURCE, { eval: true, workerData: { path } });
    worker.once('message', (m: { size: number; sha256: string; error?: string }) => {
      void worker.terminate();
      if (m.error) reject(new Error(m.error));
      else resolvePromise(m);
    });
    worker.once('error', reject);
  });
}
