#!/bin/sh
# Runs test files with node:test (npm test: every test/*.test.ts; npm run test:matrix: a subset), each
# file in its own process, three at a time on the 2-core CI machine: many files spend much of their
# time waiting (cluster elections, a browser, servers, locks held by another process), and a third file
# fills a core while they wait. When eatmydata is installed (.ci/run installs it), the run goes through
# it: fsync and its kin return at once instead of waiting for the disk. No test can observe
# the difference (the kills the tests make are process kills, which lose nothing the page cache holds;
# nothing here cuts the power), and the code still makes every one of those calls; the suite spent a
# large part of its wall time waiting for them (docs/operations.md, "The test suite").
# For the same reason the tests' temporary files (os.tmpdir(): every test's scratch roots) go to a
# directory of this run on /dev/shm when TMPDIR is not set and that tmpfs has 4 GiB free; it is removed
# when the run ends. There, creating and deleting a file costs memory only: no block allocation, no
# writeback, no discard. On these machines' ext4 (no journal, mounted with discard) each file created
# costs more for every file deleted nearby in the last minutes, and the suite does both all the time.
# Set TMPDIR to keep them elsewhere.
# Usage: scripts/test.sh [FILE…]   (default: test/*.test.ts)
set -e
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || set -- test/*.test.ts
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] &&
  [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')" -ge 4194304 ] 2>/dev/null; then
  TMPDIR=$(mktemp -d /dev/shm/nexo-test-XXXXXX)
  export TMPDIR
  trap 'rm -rf "$TMPDIR"' EXIT
  trap 'exit 130' INT TERM
fi
run() {
  if command -v eatmydata >/dev/null 2>&1; then set -- eatmydata "$@"; fi
  "$@"
}
status=0
run node --import tsx --test --test-concurrency=3 --test-timeout=600000 "$@" || status=$?
exit "$status"
