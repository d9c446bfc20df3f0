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
# The test files and every module outside src/ they import run as their transforms on the built
# package (scripts/build-tests.ts, test/helpers/transform.ts: esbuild's transform of each file, its
# imports of src/ pointed at dist/src), not under tsx: tsx's loader thread and its compiling of src/ in
# every test process, worker thread and program host cost ~8 % of the suite's CPU, 17 % of the test
# processes' own (docs/operations.md, "stop 36"). dist/ is rebuilt first when a source file is newer.
# Usage: scripts/test.sh [OPTION…] [FILE…]   (default: test/*.test.ts; options go to node --test)
set -e
cd "$(dirname "$0")/.."
options=''
files=''
for arg in "$@"; do
  case "$arg" in
  -*) options="$options
$arg" ;;
  *) files="$files
$arg" ;;
  esac
done
[ -n "$files" ] || files=$(printf '%s\n' test/*.test.ts)
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] &&
  [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')" -ge 4194304 ] 2>/dev/null; then
  TMPDIR=$(mktemp -d /dev/shm/nexo-test-XXXXXX)
  export TMPDIR
  trap 'rm -rf "$TMPDIR"' EXIT
  trap 'exit 130' INT TERM
fi
# NODE_EXTRA_CA_CERTS (these machines set it to the system's bundle) makes every Node process parse that
# bundle as it starts: ~38 ms of CPU, and the suite starts ~530 Node processes (the test files, the CLIs
# whose process is what a test is about, daemons, MCP servers, fixtures). No test reaches a TLS server
# outside the machine, so the suite runs without it (docs/operations.md, "stop 63").
unset NODE_EXTRA_CA_CERTS
run() {
  if command -v eatmydata >/dev/null 2>&1; then set -- eatmydata "$@"; fi
  "$@"
}
# (one path per line, not expanded again: the checkout's path may hold spaces, never a newline)
set -f
IFS='
'
# shellcheck disable=SC2086
built=$(node --import tsx scripts/build-tests.ts $files)
status=0
# shellcheck disable=SC2086
run node --test --test-concurrency=3 --test-timeout=600000 $options $built || status=$?
exit "$status"
