// Owns the "encrypted snapshot vs plaintext snapshot" measurement (design.md §5, budget ≤ 1.15×): the
// same ref-170 snapshot in child processes, plaintext and age-encrypted to one X25519 recipient,
// interleaved (alternating which goes first) so drift of the machine hits both alike. The encrypted
// bundle is checked to be an age file that opens with the identity before it counts.

import { rmSync } from 'node:fs';
import { generateIdentity, loadIdentities, readAgeHeader } from '../src/crypto/age.js';
import { verifyBundleFile } from '../src/verify/verify.js';
import { type ChildResult, median, runChild } from './lib.js';

export interface EncryptedMeasurement {
  plainMs: number[];
  encryptedMs: number[];
  plainPackMs: number[];
  encryptedPackMs: number[];
  plainBytes: number;
  encryptedBytes: number;
  /** median(encrypted) / median(plaintext). */
  ratio: number;
  /** Median of the ratios of each adjacent pair: steadier when the machine's load drifts. */
  pairedRatio: number;
  /** CPU time (all threads) of each snapshot, and median(encrypted) / median(plaintext) of it. */
  plainCpuMs: number[];
  encryptedCpuMs: number[];
  cpuRatio: number;
}

const removeBundle = (path: string): void => {
  for (const suffix of ['', '.sha256', '.meta.json']) rmSync(`${path}${suffix}`, { force: true });
};

export async function measureEncrypted(
  snapArgs: Record<string, unknown>,
  runs: number,
  identityFile: string,
  log: (s: string) => void,
): Promise<EncryptedMeasurement> {
  const id = generateIdentity();
  const { writeFileSync } = await import('node:fs');
  writeFileSync(identityFile, `${id.identity}\n`, { mode: 0o600 });
  const plain: Array<ChildResult & { processMs: number }> = [];
  const enc: Array<ChildResult & { processMs: number }> = [];
  let checked = false;
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? (['plain', 'enc'] as const) : (['enc', 'plain'] as const);
    for (const kind of order) {
      const r = runChild(
        'snapshot-child.ts',
        kind === 'enc' ? { ...snapArgs, encrypt: [id.recipient] } : snapArgs,
      );
      const path = String(r.bundlePath);
      if (kind === 'enc' && !checked) {
        // Counts only if it really is an age file that verifies fully with the identity.
        if (!(await readAgeHeader(path))) throw new Error(`${path} is not an age file`);
        const v = await verifyBundleFile(path, { identities: loadIdentities(identityFile) });
        if (v.status !== 'verified') throw new Error(`encrypted bundle does not verify: ${v.status}`);
        checked = true;
      }
      removeBundle(path);
      (kind === 'enc' ? enc : plain).push(r);
    }
    const p = plain[plain.length - 1]!;
    const e = enc[enc.length - 1]!;
    log(
      `run ${i + 1}: plaintext ${Math.round(p.ms)} ms (pack ${Math.round(Number(p.packMs))} ms, CPU ${Math.round(Number(p.cpuMs))} ms) | ` +
        `encrypted ${Math.round(e.ms)} ms (pack ${Math.round(Number(e.packMs))} ms, CPU ${Math.round(Number(e.cpuMs))} ms)`,
    );
  }
  rmSync(identityFile, { force: true });
  const plainMs = plain.map((r) => r.ms);
  const encryptedMs = enc.map((r) => r.ms);
  return {
    plainMs,
    encryptedMs,
    plainPackMs: plain.map((r) => Number(r.packMs)),
    encryptedPackMs: enc.map((r) => Number(r.packMs)),
    plainBytes: Number(plain[plain.length - 1]!.bundleSize),
    encryptedBytes: Number(enc[enc.length - 1]!.bundleSize),
    ratio: median(encryptedMs) / median(plainMs),
    pairedRatio: median(encryptedMs.map((e, i) => e / plainMs[i]!)),
    plainCpuMs: plain.map((r) => Number(r.cpuMs)),
    encryptedCpuMs: enc.map((r) => Number(r.cpuMs)),
    cpuRatio: median(enc.map((r) => Number(r.cpuMs))) / median(plain.map((r) => Number(r.cpuMs))),
  };
}
