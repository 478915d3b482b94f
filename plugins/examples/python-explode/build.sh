#!/usr/bin/env bash
# build.sh — builds the python-explode converter into target/python-explode.wasm.
#
# Needs python3 (3.10 or later) with venv and network access to PyPI the first time only:
# componentize-py (pinned below) is installed into its own virtualenv under
# ${PGSINK_CACHE:-$HOME/.cache/pgsink}/tools, and reused afterwards. Then:
#   1. generates the Python bindings of the WIT world (../../../wit/v0.2) into target/bindings,
#   2. runs the native unit tests (test_explode.py),
#   3. builds the component with componentize-py.
# Does nothing when target/python-explode.wasm is newer than every input. Options:
#   --force   rebuild even if the component is up to date
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$(cd "$here/../../../wit/v0.2" && pwd)"
out="$here/target/python-explode.wasm"
cache="${PGSINK_CACHE:-$HOME/.cache/pgsink}"
venv="$cache/tools/componentize-py-$COMPONENTIZE_PY_VERSION"
say() { printf 'python-explode: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

force=0
case "${1:-}" in
--force) force=1 ;;
"") ;;
*) die "unknown option $1 (usage: build.sh [--force])" ;;
esac

mkdir -p "$cache/tools" "$here/target"
# One build at a time (parallel test runs share the virtualenv and the output).
exec 9>"$cache/tools/.python-explode.lock"
flock 9

inputs=("$here/explode.py" "$here/test_explode.py" "$here/build.sh" "$wit"/*.wit)
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

# componentize-py in its own virtualenv (created once per version; .complete marks it done).
if [[ ! -f "$venv/.complete" ]]; then
    command -v python3 >/dev/null || die "python3 is missing (Debian: apt-get install python3 python3-venv)"
    say "installing componentize-py==$COMPONENTIZE_PY_VERSION into $venv"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
            say "python3 cannot create a virtualenv: apt-get install python3-venv"
            apt-get install -y -q python3-venv >&2 ||
                { apt-get update -q >&2 && apt-get install -y -q python3-venv >&2; }
            python3 -m venv "$venv"
        else
            die "python3 cannot create a virtualenv; install python3-venv (Debian) and retry"
        fi
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
    touch "$venv/.complete"
fi
cpy="$venv/bin/componentize-py"
[[ "$("$cpy" --version)" == "componentize-py $COMPONENTIZE_PY_VERSION" ]] ||
    die "$cpy is not version $COMPONENTIZE_PY_VERSION"

# Bindings of the WIT world (also what the native tests import).
rm -rf "$here/target/bindings"
"$cpy" -d "$wit" -w converter bindings "$here/target/bindings" >&2

# Native unit tests: quick, and clearer errors than a trapping component.
(cd "$here" && PYTHONPATH="$here/target/bindings" PYTHONDONTWRITEBYTECODE=1 \
    "$venv/bin/python" -m unittest -q test_explode >&2) || die "the unit tests failed"

# The component: explode.py and the standard library. componentize-py packs every file
#    of its -p folders, so explode.py gets a folder of its own.
rm -rf "$here/target/app"
mkdir -p "$here/target/app"
cp "$here/explode.py" "$here/target/app/"
say "componentize-py componentize explode -> $out"
(cd "$here/target/app" && "$cpy" -d "$wit" -w converter componentize explode \
    -p "$here/target/app" -o "$out.tmp" >&2)
mv "$out.tmp" "$out"
say "built $out ($(stat -c %s "$out") bytes)"
