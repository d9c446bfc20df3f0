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

/**
 * True for a problem message that says an artifact's size is not the manifest's (the errors above, and
 * chunk lists that name more chunks than the artifact has bytes): what a repository verify's `size_ok`
 * reports.
 */
export const isSizeProblem = (message: string): boolean =>
  / longer than its recorded size$|: \d+ bytes, the manifest says \d+$|name more chunks than the \d+ bytes they hold$/.test(
    message,
  );

/**
 * True for a problem message that comes only once an artifact was read whole, its size matching (its
 * SHA-256 differs, or a state value is not JSON).
 */
export const isAfterSizeProblem = (message: string): boolean =>
  message.endsWith(': SHA-256 does not match the manifest') || / is not valid JSON: /.test(message);
