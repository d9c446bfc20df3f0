#!/bin/sh
# Runs test files with node:test (npm test: every test/*.test.ts; npm run test:matrix: a subset), each
# file in its own process, three at a time on the 2-core CI machine: many files spend much of their
# time waiting (cluster elections, a browser, servers, locks held by another process), and a third file
# fills a core while they wait. When eatmydata is installed (.ci/run installs it), the run goes through
# it: fsync and its kin return at once instead of waiting for the disk. No test can observe
# the difference (the kills the tests make are process kills, which lose nothing the page cache holds;
# nothing here cuts the power), and the code still makes every one of those calls; the suite spent a
# large part of its wall time waiting for them (docs/operations.md, "The test suite").
# Usage: scripts/test.sh [FILE…]   (default: test/*.test.ts)
set -e
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || set -- test/*.test.ts
if command -v eatmydata >/dev/null 2>&1; then
  exec eatmydata node --import tsx --test --test-concurrency=3 --test-timeout=600000 "$@"
fi
exec node --import tsx --test --test-concurrency=3 --test-timeout=600000 "$@"
