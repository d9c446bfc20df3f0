// Owns zstd streaming over the zstd-napi binding: compression with a level and worker threads, and
// bounded decompression that pulls one output buffer at a time, so a decompression bomb is stopped at
// the limit instead of being inflated into memory first (zstd-napi's DecompressStream pushes all output
// of an input chunk at once). The decoding rules (magic, zstd's errors, truncation) and the size limit
// live here once, for this reader and the decompression worker's (zstd-worker*.ts) alike.

import { createRequire } from 'node:module';
import {
  BundleDamagedError,
  NotABundleError,
  nativeModuleError,
  UnsafeBundleError,
} from '../model/errors.js';

type Binding = typeof import('zstd-napi/binding.js');
let loaded: Binding | undefined;

/**
 * The binding, loaded on first use: a module built for another Node.js fails the operation that needs
 * it with NATIVE_MODULE instead of the import of every command.
 */
export function zstdBinding(): Binding {
  if (!loaded) {
    try {
      loaded = createRequire(import.meta.url)('zstd-napi/binding') as Binding;
    } catch (err) {
      throw nativeModuleError(err) ?? err;
    }
  }
  return loaded;
}

const OUT_CHUNK = 256 * 1024;
export const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

export interface CompressOptions {
  level: number;
  /** zstd worker threads (0 = compress on the calling thread). */
  workers: number;
}

/**
 * Output buffers of zstdCompress that its consumer is done with, taken again for the next outputs. On
 * the machines measured, the first write to each 4 KiB page of new memory costs a page fault: a new
 * 256 KiB buffer for each output of a 97 MB bundle cost the snapshot's main thread ~0.27 s, a reused
 * one nothing (docs/operations.md, "stop 31").
 */
export class OutputBuffers {
  private readonly free: Buffer[] = [];

  /** A buffer of OUT_CHUNK bytes: one given back, or a new one. */
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(OUT_CHUNK);
  }

  /**
   * Gives back an output of zstdCompress (a view at the start of one of these buffers) that nothing
   * reads any more; anything else is ignored.
   */
  give(output: Buffer): void {
    if (output.byteOffset === 0 && output.buffer.byteLength === OUT_CHUNK)
      this.free.push(Buffer.from(output.buffer, 0, OUT_CHUNK));
  }
}

/**
 * An input of zstdCompress that ends the frame there: what follows starts a new frame (a reader that
 * starts at that frame decodes what follows on its own, format/zstd-frames.ts).
 */
export const FRAME_BREAK: Buffer = Buffer.alloc(0);

/**
 * Compresses a byte stream into one zstd frame (a new one at each FRAME_BREAK of the source). Each
 * input is consumed whole before the next is asked for (zstd copies what it keeps), so a source may
 * reuse one buffer for all of them. Each output is a view of a buffer of its own, taken from `buffers`
 * when given (the consumer gives it back there once done with it).
 */
export async function* zstdCompress(
  source: AsyncIterable<Buffer>,
  opts: CompressOptions,
  buffers: OutputBuffers = new OutputBuffers(),
): AsyncGenerator<Buffer, void, undefined> {
  const cctx = cctxPool.pop() ?? new (zstdBinding().CCtx)();
  cctx.reset(zstdBinding().ResetDirective.sessionAndParameters);
  cctx.setParameter(zstdBinding().CParameter.compressionLevel, opts.level);
  if (opts.workers > 0) {
    cctx.setParameter(zstdBinding().CParameter.nbWorkers, opts.workers);
    // Small jobs: each worker holds its job's input and output, so the job size sets the peak memory.
    // Measured on ref-170's bundle (docs/operations.md, "Peak RSS"): 1 MiB jobs instead of 4 MiB lower
    // the snapshot's peak RSS from 156-159 to 130-140 MB for a 0.1 % larger bundle, no slower (the
    // default, 4 × the window, was ~25 MB above 4 MiB).
    cctx.setParameter(zstdBinding().CParameter.jobSize, 1024 * 1024);
  }
  cctx.setParameter(zstdBinding().CParameter.checksumFlag, 1);
  try {
    yield* compressWith(cctx, source, buffers);
  } finally {
    cctx.reset(zstdBinding().ResetDirective.sessionAndParameters);
    if (cctxPool.length < POOL_MAX) cctxPool.push(cctx);
  }
}

/*
 * Contexts hold tens of MB of native memory that the garbage collector does not see, so a process
 * taking many snapshots would pile them up until finalizers run. A few are kept and reused instead.
 */
const POOL_MAX = 4;
const cctxPool: InstanceType<Binding['CCtx']>[] = [];
const dctxPool: InstanceType<Binding['DCtx']>[] = [];

async function* compressWith(
  cctx: InstanceType<Binding['CCtx']>,
  source: AsyncIterable<Buffer>,
  buffers: OutputBuffers,
): AsyncGenerator<Buffer, void, undefined> {
  let out = buffers.take();
  let outLen = 0;
  const run = function* (src: Buffer, end: boolean): Generator<Buffer> {
    const directive = end ? zstdBinding().EndDirective.end : zstdBinding().EndDirective.continue;
    for (;;) {
      const [ret, produced, consumed] = cctx.compressStream2(out.subarray(outLen), src, directive);
      outLen += produced;
      src = src.subarray(consumed);
      if (OUT_CHUNK - outLen < OUT_CHUNK / 4 || (end && ret === 0 && outLen > 0)) {
        yield out.subarray(0, outLen);
        out = buffers.take();
        outLen = 0;
      }
      if (src.length === 0 && (!end || ret === 0)) return;
    }
  };
  for await (const chunk of source) {
    // (at a break, everything before it goes out in a frame of its own)
    yield* run(chunk, chunk === FRAME_BREAK);
  }
  yield* run(Buffer.alloc(0), true);
}

/** A mutable bound on the decompressed size; the reader raises it once the manifest is known. */
export interface SizeLimit {
  maxBytes: number;
  /** Decompressed bytes produced so far. */
  produced: number;
}

/**
 * Counts `n` more decompressed bytes against `limit`; UnsafeBundleError once the output exceeds it. Both
 * readers count with it: zstdDecompress, and the main thread's side of the decompression worker.
 */
export function countDecompressed(limit: SizeLimit, n: number): void {
  limit.produced += n;
  if (limit.produced > limit.maxBytes) {
    throw new UnsafeBundleError(
      `decompressed size exceeds the ${limit.maxBytes} bytes the manifest allows (decompression bomb?)`,
    );
  }
}

/**
 * The decoding rules of a bundle's zstd stream (one or more frames), shared by zstdDecompress and the
 * decompression worker (zstd-worker-main.ts): the zstd magic at the start (NotABundleError), one
 * decompression step with zstd's own errors as BundleDamagedError ("corrupt zstd data (…)"), and at the
 * end of the input, nothing read (NotABundleError) or a stream that stops inside a frame
 * (BundleDamagedError). Synchronous; the caller supplies an output buffer for each step.
 */
export class ZstdDecoder {
  private readonly dctx = dctxPool.pop() ?? new (zstdBinding().DCtx)();
  private started = false;
  private inFrame = false;

  constructor() {
    this.dctx.reset(zstdBinding().ResetDirective.sessionAndParameters);
  }

  /**
   * Decompresses all of `src`, one step into each buffer `output()` returns, and yields what each step
   * produced (a view of that buffer; empty input is ignored).
   */
  *push(src: Buffer, output: () => Buffer): Generator<Buffer, void, undefined> {
    if (src.length === 0) return;
    if (!this.started) {
      this.started = true;
      if (src.length < 4 || !src.subarray(0, 4).equals(ZSTD_MAGIC)) {
        throw new NotABundleError('not a zstd stream (bad magic)');
      }
    }
    for (;;) {
      const dst = output();
      const [ret, produced, consumed] = this.step(dst, src);
      src = src.subarray(consumed);
      if (produced > 0) yield dst.subarray(0, produced);
      if (src.length === 0 && produced < dst.length) {
        this.inFrame = ret !== 0;
        return;
      }
    }
  }

  /** Checks that the input ended where a zstd stream may end. */
  end(): void {
    if (!this.started) throw new NotABundleError('empty file');
    if (this.inFrame) throw new BundleDamagedError('truncated zstd stream (ends inside a frame)');
  }

  /** Hands the zstd context back for reuse; the decoder is not used afterwards. */
  release(): void {
    this.dctx.reset(zstdBinding().ResetDirective.sessionAndParameters);
    if (dctxPool.length < POOL_MAX) dctxPool.push(this.dctx);
  }

  private step(dst: Buffer, src: Buffer): [number, number, number] {
    try {
      return this.dctx.decompressStream(dst, src);
    } catch (err) {
      throw new BundleDamagedError(`corrupt zstd data (${(err as Error).message})`, { cause: err });
    }
  }
}

/**
 * Decompresses a zstd stream (one or more frames). Each yielded chunk is valid until the consumer
 * pulls the next one (output buffers are reused). Throws NotABundleError when the input does not start
 * with the zstd magic, BundleDamagedError on corrupt or truncated data, UnsafeBundleError when the
 * output would exceed `limit.maxBytes`.
 */
export async function* zstdDecompress(
  source: AsyncIterable<Buffer>,
  limit: SizeLimit,
): AsyncGenerator<Buffer, void, undefined> {
  const decoder = new ZstdDecoder();
  // Output buffers are reused in turn: each yielded chunk is valid until the consumer pulls again
  // (every reader here finishes with a chunk first), which spares the GC ~1,000 fresh buffers per 200 MB.
  const ring = [Buffer.allocUnsafe(OUT_CHUNK), Buffer.allocUnsafe(OUT_CHUNK)];
  let turn = 0;
  const output = (): Buffer => ring[turn++ & 1]!;
  try {
    for await (const src of source) {
      for (const out of decoder.push(src, output)) {
        countDecompressed(limit, out.length);
        yield out;
      }
    }
    decoder.end();
  } finally {
    decoder.release();
  }
}
