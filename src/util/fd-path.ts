// Owns asking the kernel where an open descriptor's file is (Linux /proc/self/fd): the check that a file
// opened by path is the one at that path, whatever symlink its parents were when it was opened (stop 46:
// a memory or state file must not be read from outside the agent's directories).

import { lstatSync, readlinkSync } from 'node:fs';

let procWorks: boolean | undefined;

/** Whether /proc/self/fd gives the path of a descriptor here (asked once per process). */
export function procFdWorks(): boolean {
  if (procWorks === undefined) {
    try {
      // (not a descriptor's link: fd 0 may be closed in a daemon)
      procWorks = lstatSync('/proc/self/fd').isDirectory();
    } catch {
      procWorks = false;
    }
  }
  return procWorks;
}

/**
 * Whether the kernel's path of `fd` is `path`: the inode opened is at that path now, whatever symlink
 * its parents were at the open (a file removed since it was opened is read as it was at `path`).
 */
export function procPathIs(fd: number, path: string): boolean {
  let actual: string;
  try {
    actual = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return false;
  }
  return actual === path || actual === `${path} (deleted)`;
}
