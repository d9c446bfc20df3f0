// Owns the errors of content that does not match its reference (a manifest's size and SHA-256): the
// same words whether it was read on the calling thread (content.ts readContent) or written on a
// restore's thread (write-lane.ts), so a damaged snapshot is reported alike either way.

import { BundleDamagedError } from '../model/errors.js';

/** More bytes than the reference records (found as they arrive). */
export const longerThanRecorded = (what: string): BundleDamagedError =>
  new BundleDamagedError(`${what}: longer than its recorded size`);

/** The whole's size differs from the reference's. */
export const sizeDiffers = (what: string, size: number, recorded: number): BundleDamagedError =>
  new BundleDamagedError(`${what}: ${size} bytes, the manifest says ${recorded}`);

/** The whole's SHA-256 differs from the reference's. */
export const hashDiffers = (what: string): BundleDamagedError =>
  new BundleDamagedError(`${what}: SHA-256 does not match the manifest`);
