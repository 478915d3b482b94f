#!/usr/bin/env bash
# tests/tansu.sh start|stop|status [PORT] — a tansu 0.6.0 Kafka broker for the tests.
#
# Runs `tansu broker` with the in-memory storage engine on 127.0.0.1:PORT (default 19092, so as
# not to clash with a Kafka of your own on 9092), in the background. Its pid and log live in
# ${PGSINK_RUN_DIR:-/tmp/pgsink-run}/tansu-PORT.{pid,log}.
#   start    start it, or reuse the one already running on PORT; returns once the port accepts
#            connections (at most PGSINK_TANSU_WAIT seconds, default 30)
#   stop     stop it (TERM, then KILL after 10 s); nothing to do if it is not running
#   status   print whether it runs; exit 0 if it does, 3 if not
# The binary is $TANSU_BIN, else the one `tests/setup.sh --tansu` builds into
# ${PGSINK_CACHE:-~/.cache/pgsink}/tools/tansu-0.6.0/bin/tansu. tansu logs at RUST_LOG
# (default here: warn). Everything it stores is lost when it stops.
set -euo pipefail

: "${HOME:=$(cd ~ && pwd)}"

msg() { printf 'tansu.sh: %s\n' "$*" >&2; }
die() {
    printf 'tansu.sh: ERROR: %s\n' "$*" >&2
    exit 1
}
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

cmd="${1:-}"
port="${2:-19092}"
case "$cmd" in
start | stop | status) ;;
-h | --help) usage 0 ;;
*) usage 2 ;;
esac
if ! [[ "$port" =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then
    die "bad port '$port'"
fi

run_dir="${PGSINK_RUN_DIR:-/tmp/pgsink-run}"
pid_file="$run_dir/tansu-$port.pid"
log_file="$run_dir/tansu-$port.log"
addr="127.0.0.1:$port"

# Does something accept TCP connections on the port?
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; }

# Pid of our tansu on this port, if it is alive (and really is a tansu broker).
running_pid() {
    local pid
    [[ -s "$pid_file" ]] || return 1
    pid="$(<"$pid_file")"
    [[ "$pid" =~ ^[0-9]+$ ]] && [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "tansu.* broker .*tcp://$addr " || return 1
    printf '%s\n' "$pid"
}

log_tail() {
    if [[ -s "$log_file" ]]; then
        msg "last lines of $log_file:"
        tail -n 20 "$log_file" >&2
    fi
}

case "$cmd" in
status)
    if pid="$(running_pid)"; then
        if port_open; then
            msg "running: pid $pid, tcp://$addr, log $log_file"
        else
            msg "running: pid $pid, but tcp://$addr does not accept connections (yet?); log $log_file"
        fi
        exit 0
    fi
    msg "not running on $addr"
    exit 3
    ;;

stop)
    if ! pid="$(running_pid)"; then
        rm -f "$pid_file"
        msg "not running on $addr (nothing to stop)"
        exit 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        msg "pid $pid ignored TERM for 10 s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
    msg "stopped (pid $pid, $addr)"
    exit 0
    ;;
esac

# --- start ----------------------------------------------------------------------------------
wait_s="${PGSINK_TANSU_WAIT:-30}"
if pid="$(running_pid)"; then
    if port_open; then
        msg "already running: pid $pid on tcp://$addr (reused; log $log_file)"
        exit 0
    fi
    msg "pid $pid is starting on $addr; waiting for it"
else
    rm -f "$pid_file"
    if port_open; then
        die "port $port is already in use by another process (not our tansu); pick another PORT"
    fi
    bin="${TANSU_BIN:-${PGSINK_CACHE:-$HOME/.cache/pgsink}/tools/tansu-0.6.0/bin/tansu}"
    [[ -x "$bin" ]] || die "no tansu binary at $bin — run tests/setup.sh --tansu first (or set TANSU_BIN)"
    mkdir -p "$run_dir"
    msg "starting $bin broker on tcp://$addr (memory engine; log $log_file)"
    # Not tied to this shell: it keeps running after `start` returns, until `stop`.
    # tansu also reads SCHEMA_REGISTRY and OTEL_EXPORTER_OTLP_ENDPOINT: keep the test broker plain.
    env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT RUST_LOG="${RUST_LOG:-warn}" \
        nohup "$bin" broker \
        --listener-url "tcp://$addr" \
        --advertised-listener-url "tcp://$addr" \
        --storage-engine memory://tansu/ \
        </dev/null >"$log_file" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$pid_file"
fi

deadline=$((SECONDS + wait_s))
until port_open; do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pid_file"
        log_tail
        die "tansu (pid $pid) exited before accepting connections on $addr"
    fi
    if ((SECONDS >= deadline)); then
        log_tail
        kill -TERM "$pid" 2>/dev/null || true
        rm -f "$pid_file"
        die "tansu (pid $pid) does not accept connections on $addr after ${wait_s} s; stopped it"
    fi
    sleep 0.2
done
# The port may belong to someone else who grabbed it meanwhile: make sure ours is alive.
sleep 0.3
if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$pid_file"
    log_tail
    die "tansu (pid $pid) exited right after start (port $port taken by another process?)"
fi
msg "ready: pid $pid, tcp://$addr"
