#!/usr/bin/env bash
# build.sh — builds the js-keyed converter into target/js-keyed.wasm.
#
# Needs Node.js 18 or later with npm, and access to the npm registry the first time only:
# jco and componentize-js, pinned in package.json and package-lock.json, are installed with
# `npm ci` into ${PGSINK_CACHE:-$HOME/.cache/pgsink}/tools/js-keyed-<lock hash>, and reused
# afterwards. Then:
#   1. generates the TypeScript declarations of the WIT world (../../../wit/v0.2) into
#      target/types (for editors; jsconfig.json points at them),
#   2. runs the native unit tests (test_keyed.js),
#   3. builds the component with `jco componentize` (StarlingMonkey engine; the wasi:http
#      and fetch-event features are disabled: a converter has no network).
# Does nothing when target/js-keyed.wasm is newer than every input. Options:
#   --force   rebuild even if the component is up to date
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$(cd "$here/../../../wit/v0.2" && pwd)"
out="$here/target/js-keyed.wasm"
cache="${PGSINK_CACHE:-$HOME/.cache/pgsink}"
say() { printf 'js-keyed: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

force=0
case "${1:-}" in
--force) force=1 ;;
"") ;;
*) die "unknown option $1 (usage: build.sh [--force])" ;;
esac

mkdir -p "$cache/tools" "$here/target"
# One build at a time (parallel test runs share the tools and the output).
exec 9>"$cache/tools/.js-keyed.lock"
flock 9

inputs=("$here/keyed.js" "$here/test_keyed.js" "$here/build.sh" "$here/package.json"
    "$here/package-lock.json" "$wit"/*.wit)
if [[ "$force" == 0 && -f "$out" ]]; then
    newer=0
    for f in "${inputs[@]}"; do
        [[ "$f" -nt "$out" ]] && newer=1
    done
    if [[ "$newer" == 0 ]]; then
        say "up to date: $out"
        exit 0
    fi
fi

command -v node >/dev/null && command -v npm >/dev/null ||
    die "node and npm are needed (Debian: apt-get install nodejs npm)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= 18)) || die "Node.js 18 or later is needed, this is $(node --version)"

# The pinned tools, installed once per package-lock.json.
lock_hash="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16)"
tools="$cache/tools/js-keyed-$lock_hash"
if [[ ! -f "$tools/.complete" ]]; then
    say "installing jco and componentize-js (npm ci) into $tools"
    rm -rf "$tools"
    mkdir -p "$tools"
    cp "$here/package.json" "$here/package-lock.json" "$tools/"
    (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >&2)
    touch "$tools/.complete"
fi
jco="$tools/node_modules/.bin/jco"

# Declarations of the WIT world's JavaScript shapes.
rm -rf "$here/target/types"
"$jco" guest-types "$wit" --world-name converter --out-dir "$here/target/types/" --quiet >&2

# Native unit tests: quick, and clearer errors than a trapping component.
(cd "$here" && node --test --test-reporter=dot test_keyed.js >&2) || die "the unit tests failed"

# The component.
say "jco componentize keyed.js -> $out"
(cd "$here" && "$jco" componentize "$here/keyed.js" --wit "$wit" --world-name converter \
    --disable http fetch-event --out "$out.tmp" >&2)
mv "$out.tmp" "$out"
say "built $out ($(stat -c %s "$out") bytes)"
