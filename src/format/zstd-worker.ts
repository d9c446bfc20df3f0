// Owns reading a whole bundle file on a worker thread: the worker reads the file into a ring of
// shared-memory input slots, decrypts an age payload chunk by authenticated chunk when given its key,
// and decompresses into a second ring of output slots. The main thread hashes the input slots (the
// sibling check, over exactly the bytes decompressed: a slot is reused only once hashed) and parses
// and hashes the output as it arrives. Two cores instead of one for verify and restore. The decompression step mirrors zstdDecompress() in zstd.ts (magic
// check, truncation and corruption errors); the size limit is enforced here on the main thread.

import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import {
  BundleDamagedError,
  EncryptionError,
  NotABundleError,
  nativeModuleError,
  UnsafeBundleError,
} from '../model/errors.js';
import type { SizeLimit } from './zstd.js';

// Output ring (decompressed) and input ring (the file's bytes as read). Fewer, larger slots: every
// hand-over costs a wake-up of the other thread.
const SLOTS = 8;
const SLOT_SIZE = 1024 * 1024;
const RAW_SLOTS = 4;
const RAW_SIZE = 1024 * 1024;
// Control words: produced count, consumed count, state (0 running, 1 ended), stop request, input
// slots read, input slots hashed. The main thread waits on HEAD for both rings.
const HEAD = 0;
const TAIL = 1;
const STATE = 2;
const STOP = 3;
const RAW_HEAD = 4;
const RAW_TAIL = 5;

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const binding = require(workerData.binding);
const fs = require('node:fs');
const crypto = require('node:crypto');
const { path, slots, slotSize } = workerData;
const C = new Int32Array(workerData.ctrl);
const lens = new Int32Array(workerData.lens);
const views = Array.from({ length: slots }, (_, i) => new Uint8Array(workerData.data, i * slotSize, slotSize));
const { rawSlots, rawSize } = workerData;
const rawLens = new Int32Array(workerData.rawLens);
const rawViews = Array.from({ length: rawSlots }, (_, i) => Buffer.from(workerData.raw, i * rawSize, rawSize));
const MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
class Stop extends Error {}
function end(message) {
  parentPort.postMessage(message);
  Atomics.store(C, 2, 1);
  Atomics.notify(C, 0);
}
const decrypt = workerData.decrypt; // { key, offset } for age files: payload key, where STREAM starts
const AGE_CHUNK = 65536 + 16;
let fd;
try {
  fd = fs.openSync(path, 'r');
  const dctx = new binding.DCtx();
  let total = 0, reported = 0, first = true, inFrame = false;
  // zstd: decompress one buffer into the slots
  const feed = (src) => {
    if (first) {
      first = false;
      if (src.length < 4 || !src.subarray(0, 4).equals(MAGIC)) { end({ type: 'error', code: 'NOT_A_BUNDLE', message: 'not a zstd stream (bad magic)' }); throw new Stop(); }
    }
    for (;;) {
      while (Atomics.load(C, 0) - Atomics.load(C, 1) >= slots) {
        if (Atomics.load(C, 3)) throw new Stop();
        Atomics.wait(C, 1, Atomics.load(C, 1), 200);
      }
      if (Atomics.load(C, 3)) throw new Stop();
      const head = Atomics.load(C, 0);
      const slot = head % slots;
      let r;
      try { r = dctx.decompressStream(views[slot], src); }
      catch (err) { end({ type: 'error', code: 'BUNDLE_DAMAGED', message: 'corrupt zstd data (' + err.message + ')' }); throw new Stop(); }
      const [ret, produced, consumed] = r;
      src = src.subarray(consumed);
      if (produced > 0) { lens[slot] = produced; Atomics.store(C, 0, head + 1); Atomics.notify(C, 0); }
      if (src.length === 0 && produced < slotSize) { inFrame = ret !== 0; return; }
    }
  };
  // age STREAM: 64 KiB chunks, each authenticated before a byte of it is used
  let skip = decrypt ? decrypt.offset : 0, pending = Buffer.alloc(0), counter = 0;
  const open = (data, last) => {
    const nonce = Buffer.alloc(12);
    nonce.writeUIntBE(counter++, 5, 6);
    nonce[11] = last ? 1 : 0;
    try {
      const d = crypto.createDecipheriv('chacha20-poly1305', Buffer.from(decrypt.key), nonce, { authTagLength: 16 });
      d.setAuthTag(data.subarray(data.length - 16));
      return Buffer.concat([d.update(data.subarray(0, data.length - 16)), d.final()]);
    } catch {
      end({ type: 'error', code: 'BUNDLE_DAMAGED', message: 'age payload failed authentication (tampered or truncated)' });
      throw new Stop();
    }
  };
  const onRaw = (raw) => {
    if (!decrypt) return feed(raw);
    if (skip > 0) { const s = Math.min(skip, raw.length); skip -= s; raw = raw.subarray(s); }
    if (raw.length === 0) return;
    pending = pending.length ? Buffer.concat([pending, raw]) : Buffer.from(raw);
    while (pending.length > AGE_CHUNK) { feed(open(pending.subarray(0, AGE_CHUNK), false)); pending = pending.subarray(AGE_CHUNK); }
  };
  for (;;) {
    // an input slot is free once the main thread has hashed it (and this thread is done with it)
    while (Atomics.load(C, 4) - Atomics.load(C, 5) >= rawSlots) {
      if (Atomics.load(C, 3)) throw new Stop();
      Atomics.wait(C, 5, Atomics.load(C, 5), 200);
    }
    const rawHead = Atomics.load(C, 4);
    const rawSlot = rawHead % rawSlots;
    const n = fs.readSync(fd, rawViews[rawSlot], 0, rawSize, null);
    if (n === 0) break;
    const raw = rawViews[rawSlot].subarray(0, n);
    rawLens[rawSlot] = n;
    Atomics.store(C, 4, rawHead + 1);
    Atomics.notify(C, 0);
    total += n;
    if (total - reported >= 4 << 20) { reported = total; parentPort.postMessage({ type: 'read', bytes: total }); }
    onRaw(raw);
  }
  if (decrypt) {
    if (pending.length < 16) { end({ type: 'error', code: 'BUNDLE_DAMAGED', message: 'age payload truncated' }); throw new Stop(); }
    feed(open(pending, true));
  }
  if (first) end({ type: 'error', code: 'NOT_A_BUNDLE', message: 'empty file' });
  else if (inFrame) end({ type: 'error', code: 'BUNDLE_DAMAGED', message: 'truncated zstd stream (ends inside a frame)' });
  else end({ type: 'end', bytes: total });
} catch (err) {
  if (!(err instanceof Stop)) end({ type: 'error', code: err && err.code || 'IO', message: String(err && err.message || err) });
} finally {
  if (fd !== undefined) fs.closeSync(fd);
}
`;

const bindingPath = createRequire(import.meta.url).resolve('zstd-napi/binding');

type EndMessage = { type: 'end'; bytes: number } | { type: 'error'; code: string; message: string };

interface AtomicsWithWaitAsync {
  waitAsync(
    ta: Int32Array,
    index: number,
    value: number,
    timeoutMs: number,
  ): { async: boolean; value: Promise<string> | string };
}

export interface OffThreadStream {
  /** Decompressed chunks; each is valid until the next pull. */
  chunks: AsyncGenerator<Buffer, void, undefined>;
  /** SHA-256 and size of the compressed file, once `chunks` has ended. */
  file(): { sha256: string; bytes: number } | undefined;
}

/** Reads, hashes and decompresses the file at `path` on a worker thread. */
export function decompressFileOffThread(
  path: string,
  limit: SizeLimit,
  onRead?: (compressedBytes: number) => void,
  decrypt?: { key: Buffer; offset: number },
): OffThreadStream {
  const ctrl = new SharedArrayBuffer(6 * 4);
  const lensBuf = new SharedArrayBuffer(4 * SLOTS);
  const data = new SharedArrayBuffer(SLOTS * SLOT_SIZE);
  const rawLensBuf = new SharedArrayBuffer(4 * RAW_SLOTS);
  const rawData = new SharedArrayBuffer(RAW_SLOTS * RAW_SIZE);
  const C = new Int32Array(ctrl);
  const lens = new Int32Array(lensBuf);
  const out = Buffer.from(data);
  const rawLens = new Int32Array(rawLensBuf);
  const rawOut = Buffer.from(rawData);
  const fileHash = createHash('sha256');
  let fileBytes = 0;
  let fileDigest: string | undefined;
  /** Hashes every input slot the worker has filled, and hands the slots back. */
  const hashInput = (): void => {
    for (;;) {
      const tail = Atomics.load(C, RAW_TAIL);
      if (tail >= Atomics.load(C, RAW_HEAD)) return;
      const slot = tail % RAW_SLOTS;
      const n = rawLens[slot]!;
      fileHash.update(rawOut.subarray(slot * RAW_SIZE, slot * RAW_SIZE + n));
      fileBytes += n;
      Atomics.store(C, RAW_TAIL, tail + 1);
      Atomics.notify(C, RAW_TAIL);
    }
  };
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: {
      binding: bindingPath,
      path,
      slots: SLOTS,
      slotSize: SLOT_SIZE,
      ctrl,
      lens: lensBuf,
      data,
      rawSlots: RAW_SLOTS,
      rawSize: RAW_SIZE,
      rawLens: rawLensBuf,
      raw: rawData,
      decrypt: decrypt ? { key: new Uint8Array(decrypt.key), offset: decrypt.offset } : null,
    },
  });
  let ended: EndMessage | undefined;
  const endPromise = new Promise<EndMessage>((resolvePromise) => {
    worker.on('message', (m: EndMessage | { type: 'read'; bytes: number }) => {
      if (m.type === 'read') onRead?.(m.bytes);
      else {
        ended = m;
        if (m.type === 'end') onRead?.(m.bytes);
        resolvePromise(m);
      }
    });
    worker.on('error', (err) => {
      ended ??= { type: 'error', code: 'IO', message: err.message };
      resolvePromise(ended);
      Atomics.store(C, STATE, 1);
      Atomics.notify(C, HEAD);
    });
  });
  const atomics = Atomics as unknown as AtomicsWithWaitAsync;

  async function* chunks(): AsyncGenerator<Buffer, void, undefined> {
    try {
      for (;;) {
        hashInput();
        const state = Atomics.load(C, STATE);
        const head = Atomics.load(C, HEAD);
        const tail = Atomics.load(C, TAIL);
        if (tail < head) {
          const slot = tail % SLOTS;
          const n = lens[slot]!;
          limit.produced += n;
          if (limit.produced > limit.maxBytes) {
            throw new UnsafeBundleError(
              `decompressed size exceeds the ${limit.maxBytes} bytes the manifest allows (decompression bomb?)`,
            );
          }
          yield out.subarray(slot * SLOT_SIZE, slot * SLOT_SIZE + n);
          Atomics.store(C, TAIL, tail + 1);
          Atomics.notify(C, TAIL);
          continue;
        }
        if (state !== 0) {
          const m = await endPromise;
          if (m.type === 'end') {
            hashInput(); // every slot was filled before the state changed
            if (fileBytes !== m.bytes) throw new Error(`read ${m.bytes} bytes but hashed ${fileBytes}`);
            fileDigest = fileHash.digest('hex');
            return;
          }
          if (m.code === 'NOT_A_BUNDLE') throw new NotABundleError(m.message);
          if (m.code === 'BUNDLE_DAMAGED') throw new BundleDamagedError(m.message);
          if (m.code === 'ENCRYPTION') throw new EncryptionError(m.message);
          const e = new Error(m.message) as NodeJS.ErrnoException;
          e.code = m.code;
          throw nativeModuleError(e) ?? e;
        }
        // The timeout covers the end of the stream, which changes STATE but not HEAD.
        const w = atomics.waitAsync(C, HEAD, head, 20);
        if (w.async) await w.value;
      }
    } finally {
      // The worker ends by itself on STOP: it checks it between zstd calls and at least every 200 ms
      // while it waits. Never terminate() it: on Node 22 and 24, a worker terminated inside a
      // zstd-napi call aborts the whole process ("terminate called after throwing 'Napi::Error'").
      Atomics.store(C, STOP, 1);
      Atomics.notify(C, TAIL);
      Atomics.notify(C, RAW_TAIL);
    }
  }

  return {
    chunks: chunks(),
    file: () => (fileDigest !== undefined ? { sha256: fileDigest, bytes: fileBytes } : undefined),
  };
}
