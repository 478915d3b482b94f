#!/usr/bin/env bash
# tests/setup.sh — make a Debian machine ready to build, test and demo pgsink.
#
#   tests/setup.sh            Rust wasm32-wasip2 target, rustfmt/clippy, a C toolchain,
#                             and a PostgreSQL reachable over TCP without a password
#   tests/setup.sh --tansu    the same, plus the tansu 0.6.0 Kafka broker (built once, cached)
#
# Executed or sourced (`source tests/setup.sh --tansu` from bash scripts that also use
# `set -euo pipefail`). Every step is skipped when already satisfied, so a second run takes
# well under a second. Progress goes to stderr, one line per step.
#
# Environment (all optional):
#   PGSINK_PGHOST / PGSINK_PGPORT / PGSINK_PGUSER   PostgreSQL to use (127.0.0.1 / 5432 / postgres)
#   PGSINK_PGPASSWORD    its password, if it needs one (put into the connection string)
#   PGSINK_PG_TRUST=1    allow editing pg_hba.conf of an already-running local Debian cluster
#                        (done without asking only for a cluster this script installed or started)
#   PGSINK_NEED_TANSU=1  same as --tansu
#   PGSINK_CACHE         cache folder (default ~/.cache/pgsink); tansu goes to tools/tansu-0.6.0
#   PGSINK_RUN_DIR       logs of this script (default /tmp/pgsink-run)
#
# Exports, for the calling script when sourced: PGSINK_PGHOST, PGSINK_PGPORT, PGSINK_PGUSER,
# PGSINK_PG (connection string "host=… port=… user=…") and, with --tansu, TANSU_BIN.
set -euo pipefail

: "${HOME:=$(cd ~ && pwd)}"
# A login shell would have put rustup's cargo on PATH; CI or cron may not have.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

pgsink_setup_msg() { printf 'setup: %s\n' "$*" >&2; }
pgsink_setup_die() {
    printf 'setup: ERROR: %s\n' "$*" >&2
    exit 1
}

pgsink_setup_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pgsink_setup_tansu="${PGSINK_NEED_TANSU:-0}"
for pgsink_setup_arg in "$@"; do
    case "$pgsink_setup_arg" in
    --tansu) pgsink_setup_tansu=1 ;;
    --) ;; # no-op: lets a script `source tests/setup.sh --` without passing on its own arguments
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
        exit 0
        ;;
    *) pgsink_setup_die "unknown argument '$pgsink_setup_arg' (try --help)" ;;
    esac
done

export PGSINK_PGHOST="${PGSINK_PGHOST:-127.0.0.1}"
export PGSINK_PGPORT="${PGSINK_PGPORT:-5432}"
export PGSINK_PGUSER="${PGSINK_PGUSER:-postgres}"
PGSINK_PG="host=$PGSINK_PGHOST port=$PGSINK_PGPORT user=$PGSINK_PGUSER"
if [[ -n "${PGSINK_PGPASSWORD:-}" ]]; then
    pgsink_setup_pw="${PGSINK_PGPASSWORD//\\/\\\\}"
    # shellcheck disable=SC2089,SC2090 # literal quotes: libpq/tokio-postgres conninfo syntax
    PGSINK_PG="$PGSINK_PG password='${pgsink_setup_pw//\'/\\\'}'"
fi
# shellcheck disable=SC2090
export PGSINK_PG
pgsink_setup_logdir="${PGSINK_RUN_DIR:-/tmp/pgsink-run}"
pgsink_setup_cache="${PGSINK_CACHE:-$HOME/.cache/pgsink}"

pgsink_setup_sudo=()
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        pgsink_setup_sudo=(sudo)
    fi
fi

# --- apt ------------------------------------------------------------------------------------
pgsink_setup_apt_updated=0
pgsink_setup_apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        pgsink_setup_die "need the Debian package(s) $* but apt-get is missing; install them by hand"
    mkdir -p "$pgsink_setup_logdir"
    local log="$pgsink_setup_logdir/apt.log"
    if [[ "$pgsink_setup_apt_updated" == 0 ]]; then
        pgsink_setup_msg "apt-get update (log: $log)"
        "${pgsink_setup_sudo[@]}" apt-get update >"$log" 2>&1 ||
            { tail -n 20 "$log" >&2; pgsink_setup_die "apt-get update failed"; }
        pgsink_setup_apt_updated=1
    fi
    pgsink_setup_msg "apt-get install -y $* (log: $log)"
    "${pgsink_setup_sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "$@" >>"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; pgsink_setup_die "apt-get install $* failed"; }
}

# --- Rust -----------------------------------------------------------------------------------
pgsink_setup_rust() {
    command -v cargo >/dev/null 2>&1 ||
        pgsink_setup_die "cargo not found: install Rust with rustup (https://rustup.rs), then rerun"
    if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1 ||
        ! perl -MFindBin -MFile::Compare -e 1 >/dev/null 2>&1; then
        # librdkafka (bundled by the rdkafka crate), zlib and OpenSSL (vendored, for Kafka
        # TLS) are C, built with cc + make; OpenSSL's Configure needs perl with its modules.
        pgsink_setup_apt_install build-essential perl
    fi
    if command -v rustup >/dev/null 2>&1; then
        # Run in the workspace so that a rust-toolchain file there, if any, picks the toolchain.
        if ! (cd "$pgsink_setup_root" && rustup target list --installed) | grep -qx 'wasm32-wasip2'; then
            pgsink_setup_msg "rustup target add wasm32-wasip2"
            (cd "$pgsink_setup_root" && rustup target add wasm32-wasip2) >&2
        fi
        local comp
        for comp in rustfmt clippy; do
            if ! (cd "$pgsink_setup_root" && cargo "${comp/rustfmt/fmt}" --version) >/dev/null 2>&1; then
                pgsink_setup_msg "rustup component add $comp"
                (cd "$pgsink_setup_root" && rustup component add "$comp") >&2
            fi
        done
    elif [[ ! -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2" ]]; then
        pgsink_setup_die "Rust target wasm32-wasip2 missing and no rustup to add it"
    fi
}

# --- PostgreSQL -----------------------------------------------------------------------------
# Run psql exactly as the tests connect: only the connection string, no ~/.pgpass, no PGPASSWORD
# from the environment (tokio-postgres reads neither).
pgsink_setup_psql() {
    env -u PGPASSWORD -u PGSERVICE -u PGDATABASE PGPASSFILE=/nonexistent/pgsink-no-pgpass PGCONNECT_TIMEOUT=5 \
        psql "$PGSINK_PG" -w -X -A -t -q -v ON_ERROR_STOP=1 "$@"
}
pgsink_setup_pg_ready() {
    pg_isready -q -h "$PGSINK_PGHOST" -p "$PGSINK_PGPORT" -t 3 >/dev/null 2>&1
}
pgsink_setup_pg_local() {
    case "$PGSINK_PGHOST" in
    127.* | localhost | ::1 | /*) return 0 ;;
    *) return 1 ;;
    esac
}
# Prints "VERSION NAME" of the local Debian cluster configured for $PGSINK_PGPORT, if any.
pgsink_setup_pg_cluster() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    pg_lsclusters -h 2>/dev/null | awk -v p="$PGSINK_PGPORT" '$3 == p { print $1, $2; exit }'
}

pgsink_setup_postgres() {
    local cluster="" ver name ours=0 out
    if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
        pgsink_setup_apt_install postgresql-client
        if ! command -v pg_isready >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
            pgsink_setup_die "pg_isready/psql still missing after installing postgresql-client"
        fi
    fi

    if ! pgsink_setup_pg_ready; then
        pgsink_setup_pg_local ||
            pgsink_setup_die "no PostgreSQL answers at $PGSINK_PGHOST:$PGSINK_PGPORT (PGSINK_PGHOST is not local, so it cannot be started here)"
        cluster="$(pgsink_setup_pg_cluster)"
        if [[ -z "$cluster" ]] && ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
            pgsink_setup_msg "nothing answers at $PGSINK_PGHOST:$PGSINK_PGPORT: installing Debian's PostgreSQL"
            pgsink_setup_apt_install postgresql
            cluster="$(pgsink_setup_pg_cluster)"
        fi
        if [[ -z "$cluster" ]]; then
            if [[ -n "$(pg_lsclusters -h 2>/dev/null)" ]]; then
                pg_lsclusters >&2
                pgsink_setup_die "no local PostgreSQL cluster uses port $PGSINK_PGPORT; set PGSINK_PGPORT to one of the ports above"
            fi
            ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
            pgsink_setup_msg "creating PostgreSQL $ver cluster 'main' on port $PGSINK_PGPORT"
            "${pgsink_setup_sudo[@]}" pg_createcluster --port "$PGSINK_PGPORT" "$ver" main >&2
            cluster="$ver main"
        fi
        read -r ver name <<<"$cluster"
        pgsink_setup_msg "starting PostgreSQL $ver/$name (pg_ctlcluster --skip-systemctl-redirect $ver $name start)"
        if ! out="$("${pgsink_setup_sudo[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start 2>&1)"; then
            # "already running" is fine: it may simply not listen on TCP yet.
            grep -qi 'already running' <<<"$out" || {
                printf '%s\n' "$out" >&2
                pgsink_setup_die "could not start PostgreSQL $ver/$name (see /var/log/postgresql/postgresql-$ver-$name.log)"
            }
        fi
        ours=1
        local i
        for ((i = 0; i < 30; i++)); do
            pgsink_setup_pg_ready && break
            sleep 1
        done
        pgsink_setup_pg_ready ||
            pgsink_setup_die "PostgreSQL $ver/$name started but $PGSINK_PGHOST:$PGSINK_PGPORT does not answer after 30 s (see /var/log/postgresql/postgresql-$ver-$name.log)"
    fi

    if out="$(pgsink_setup_psql -c 'show server_version' 2>&1)"; then
        pgsink_setup_pg_version="${out%% *}"
        return 0
    fi

    # PostgreSQL answers but refuses us (Debian's default is scram-sha-256 for TCP, peer locally).
    [[ -n "$cluster" ]] || cluster="$(pgsink_setup_pg_cluster)"
    if ! pgsink_setup_pg_local || [[ -z "$cluster" ]]; then
        pgsink_setup_die "cannot log in with \"$PGSINK_PG\": $out — set PGSINK_PGUSER / PGSINK_PGPASSWORD"
    fi
    read -r ver name <<<"$cluster"
    if [[ "$ours" != 1 && "${PGSINK_PG_TRUST:-0}" != 1 ]]; then
        pgsink_setup_die "cannot log in with \"$PGSINK_PG\": $out — either set PGSINK_PGPASSWORD, or rerun with PGSINK_PG_TRUST=1 to let this script add 'host all all 127.0.0.1/32 trust' to /etc/postgresql/$ver/$name/pg_hba.conf (local testing only)"
    fi
    local hba="/etc/postgresql/$ver/$name/pg_hba.conf" marker="# added by pgsink tests/setup.sh"
    if ! grep -qF "$marker" "$hba"; then
        pgsink_setup_msg "NOTE: adding 'host all all 127.0.0.1/32 trust' (and ::1/128) at the top of $hba — passwordless TCP from this machine, for local testing only"
        local tmp
        tmp="$(mktemp)"
        {
            printf '%s (local testing only: passwordless TCP from loopback)\n' "$marker"
            printf 'host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'
            cat "$hba"
        } >"$tmp"
        "${pgsink_setup_sudo[@]}" cp "$tmp" "$hba"
        rm -f "$tmp"
        "${pgsink_setup_sudo[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload >&2
    fi
    local i
    for ((i = 0; i < 10; i++)); do
        if out="$(pgsink_setup_psql -c 'show server_version' 2>&1)"; then
            pgsink_setup_pg_version="${out%% *}"
            return 0
        fi
        # A fresh cluster has only the role "postgres" and its database.
        if grep -q 'role .* does not exist' <<<"$out"; then
            pgsink_setup_msg "creating superuser role $PGSINK_PGUSER"
            "${pgsink_setup_sudo[@]}" runuser -u postgres -- psql -p "$PGSINK_PGPORT" -qc "create role \"$PGSINK_PGUSER\" login superuser" >&2
        elif grep -q 'database .* does not exist' <<<"$out"; then
            pgsink_setup_msg "creating database $PGSINK_PGUSER"
            "${pgsink_setup_sudo[@]}" runuser -u postgres -- createdb -p "$PGSINK_PGPORT" -O "$PGSINK_PGUSER" "$PGSINK_PGUSER" >&2
        else
            sleep 0.5
        fi
    done
    pgsink_setup_die "still cannot log in with \"$PGSINK_PG\": $out"
}

# --- tansu ----------------------------------------------------------------------------------
pgsink_setup_tansu_install() {
    local prefix="$pgsink_setup_cache/tools/tansu-0.6.0"
    export TANSU_BIN="$prefix/bin/tansu"
    [[ -x "$TANSU_BIN" ]] && return 0

    mkdir -p "$pgsink_setup_cache/tools"
    # One build at a time, even across concurrent runs of this script.
    local lock="$pgsink_setup_cache/tools/tansu-0.6.0.lock"
    exec {pgsink_setup_lockfd}>"$lock"
    if ! flock -n "$pgsink_setup_lockfd"; then
        pgsink_setup_msg "another run is building tansu; waiting for it"
        flock "$pgsink_setup_lockfd"
    fi
    # …and a `cargo install` into the same prefix started by hand.
    while pgrep -f "cargo install tansu .*--root $prefix" >/dev/null 2>&1; do
        pgsink_setup_msg "a 'cargo install tansu --root $prefix' is already running; waiting for it (checking every 30 s)"
        sleep 30
    done
    if [[ ! -x "$TANSU_BIN" ]]; then
        local log="$pgsink_setup_cache/tools/tansu-0.6.0.install.log" start=$SECONDS
        pgsink_setup_msg "building tansu 0.6.0 into $prefix — first time only, 7–12 min on 2 cores (log: $log)"
        if ! cargo install tansu --version 0.6.0 --locked --features dynostore --root "$prefix" 2>&1 |
            tee "$log" |
            awk '/^ *Compiling /{ n++; if (n % 100 == 0) { printf "setup: building tansu: %d crates compiled (now %s %s)\n", n, $2, $3 > "/dev/stderr"; fflush("/dev/stderr") } }'; then
            tail -n 30 "$log" >&2
            pgsink_setup_die "building tansu failed (full log: $log)"
        fi
        [[ -x "$TANSU_BIN" ]] || pgsink_setup_die "cargo install finished but $TANSU_BIN is missing (log: $log)"
        pgsink_setup_msg "built tansu in $((SECONDS - start)) s"
    fi
    exec {pgsink_setup_lockfd}>&-
}

# --- main -----------------------------------------------------------------------------------
pgsink_setup_pg_version="?"
pgsink_setup_rust
pgsink_setup_postgres
if [[ "$pgsink_setup_tansu" == 1 ]]; then
    pgsink_setup_tansu_install
    pgsink_setup_msg "ready: PostgreSQL $pgsink_setup_pg_version at $PGSINK_PGHOST:$PGSINK_PGPORT (user $PGSINK_PGUSER); tansu: $TANSU_BIN"
else
    pgsink_setup_msg "ready: PostgreSQL $pgsink_setup_pg_version at $PGSINK_PGHOST:$PGSINK_PGPORT (user $PGSINK_PGUSER); tansu: not requested (--tansu)"
fi
