// Owns one measured snapshot in its own process (so its peak RSS is the snapshot's own): builds a
// LocalSnapshotter from the JSON argument, times the snapshot() call, and prints one JSON line with
// the wall time, peak RSS (VmHWM and process.resourceUsage().maxRSS, KiB) and the bundle. The split into
// capture (under the write gate), hash and pack comes from the snapshot's own progress events. With
// `encrypt` the bundle is age-encrypted to those recipients.

import { LocalSnapshotter } from '../src/snapshotter/local.js';
import { rssFields } from './lib.js';

interface Args {
  stateRoot: string;
  memdirRoot: string;
  sqliteRoot: string;
  agentId: string;
  /** age recipients: an encrypted snapshot (the encrypted-vs-plaintext budget). */
  encrypt?: string[];
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const s = new LocalSnapshotter({
  stateRoot: args.stateRoot,
  memdirRoot: args.memdirRoot,
  sqliteRoot: args.sqliteRoot,
});
const phaseStart = new Map<string, number>();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const meta = await s.snapshot({
  agentId: args.agentId,
  ...(args.encrypt ? { encrypt: args.encrypt } : {}),
  onProgress: (e) => {
    if (!phaseStart.has(e.phase)) phaseStart.set(e.phase, performance.now());
  },
});
const end = performance.now();
const ms = end - t0;
// CPU time of every thread of the process (main, workers, zstd's threads): steadier than wall time
// when other work shares the machine.
const cpu = process.cpuUsage(cpu0);
const at = (phase: string) => phaseStart.get(phase) ?? end;
console.log(
  JSON.stringify({
    ms,
    captureMs: at('hash') - t0,
    hashMs: at('pack') - at('hash'),
    packMs: end - at('pack'),
    cpuMs: (cpu.user + cpu.system) / 1000,
    ...rssFields(),
    bundlePath: meta.bundle_path,
    bundleSize: meta.bundle_size_bytes,
    id: meta.id,
  }),
);
