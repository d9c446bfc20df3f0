// Owns one measured verify in its own process: times verifyBundleFile(bundle) and prints one JSON line
// with the wall time, peak RSS (VmHWM and maxRSS, KiB), the report's status and bytes checked.

import { verifyBundleFile } from '../src/verify/verify.js';
import { rssFields } from './lib.js';

const { bundle } = JSON.parse(process.argv[2] ?? '{}') as { bundle: string };
const t0 = performance.now();
const report = await verifyBundleFile(bundle);
const ms = performance.now() - t0;
console.log(
  JSON.stringify({
    ms,
    ...rssFields(),
    status: report.status,
    artifacts: report.artifacts_checked,
    bytesChecked: report.bytes_checked,
    problems: report.problems.length,
  }),
);
