#!/usr/bin/env bash
# Instructions per proxied HTTP/1.1 request on the shard thread (callgrind), the figure a
# hot-path change states before and after. One shard under valgrind, the stub upstream and the
# load generator outside it: a warm-up, counters zeroed, then REQUESTS GETs at 2,000 req/s over
# 10 keep-alive connections; the busiest thread's instructions divided by the requests.
# How events batch per wake-up moves the count by 1-2% from run to run when other work shares
# the machine: run it a few times and compare ranges.
#
#   perf/callgrind.sh [epoll|io_uring ...]      (default: both)
#   MODE=h2 perf/callgrind.sh                    h2c GETs (4 connections x 100 streams) to the
#                                                HTTP/1.1 stub
#   MODE=grpc perf/callgrind.sh                  gRPC-shaped unary calls over h2c to an h2
#                                                upstream (a second ringway answering them)
#   MODE=apikey perf/callgrind.sh                the h1 GETs on a route with auth = ["api_key"]
#   MODE=jwt perf/callgrind.sh                   the h1 GETs on a route with auth = ["jwt:..."]
#                                                (one HS256 token: cached after its first use)
#   NOAUTH=1 MODE=apikey|jwt perf/callgrind.sh   the same requests (credentials and all) on the
#                                                route without auth: the baseline of the two above
#
# Needs valgrind and the release binaries (cargo build --release -p ringway-control -p ringway-perf).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-20000}
MODE=${MODE:-h1}
RATE=2000
BIN=${BIN:-target/release/ringway}
PERF=target/release/ringway-perf
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
[ -x "$BIN" ] && [ -x "$PERF" ] || { echo "build the release binaries first" >&2; exit 1; }

drivers=("$@")
[ ${#drivers[@]} -gt 0 ] || drivers=(epoll io_uring)
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && cp "$work"/callgrind.out.* "$KEEP"/ 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

stub_port=$(free_port)
"$PERF" stub --listen "127.0.0.1:$stub_port" >/dev/null 2>&1 &
pids+=($!)
disown
wait_port "$stub_port"

grpc_port=$(free_port)
if [ "$MODE" = grpc ]; then
    cat >"$work/grpc-up.toml" <<EOF
[runtime]
shards = 1
driver = "epoll"
[control]
socket = "$work/grpc-up.sock"
[[listeners]]
name = "up"
listen = "127.0.0.1:$grpc_port"
[[routes]]
name = "answer"
respond = { status = 200, headers = { content-type = "application/grpc", grpc-status = "0" }, body = "\u0000\u0000\u0000\u0000\u0000" }
EOF
    "$BIN" run -c "$work/grpc-up.toml" >"$work/grpc-up.log" 2>&1 &
    pids+=($!)
    disown
    wait_port "$grpc_port"
fi
auth_header=""
route_auth=""
identity=""
case $MODE in
    apikey)
        identity="[[consumers]]
name = \"bench\"
api_keys = [\"bench-key-0123456789\"]"
        route_auth='auth = ["api_key"]'
        auth_header="x-api-key: bench-key-0123456789" ;;
    jwt)
        secret="bench-secret-0123456789-0123456789"
        printf '%s' "$secret" >"$work/hs.key"
        token=$(python3 - "$secret" <<'PY'
import base64, hashlib, hmac, json, sys, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=")
head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b(json.dumps({"sub": "bench", "iss": "bench-idp", "exp": int(time.time()) + 3600}).encode())
sig = b(hmac.new(sys.argv[1].encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
PY
)
        identity="[[jwt_providers]]
name = \"idp\"
issuer = \"bench-idp\"
secret_file = \"$work/hs.key\"
[[consumers]]
name = \"bench\"
jwt_subject = \"bench\""
        route_auth='auth = ["jwt:idp"]'
        auth_header="authorization: Bearer $token" ;;
esac
if [ -n "${NOAUTH:-}" ]; then route_auth=""; identity=""; fi
case $MODE in
    h1|apikey|jwt) load() {
        if [ -n "$auth_header" ]; then
            "$PERF" load --url "$1" --connections 10 --rate "$RATE" --header "$auth_header" "${@:2}"
        else
            "$PERF" load --url "$1" --connections 10 --rate "$RATE" "${@:2}"
        fi
    } ;;
    h2) load() { "$PERF" h2 --url "$1" --connections 4 --streams 100 --rate "$RATE" "${@:2}"; } ;;
    grpc) load() { "$PERF" h2 --grpc --url "$1" --connections 4 --streams 100 --rate "$RATE" "${@:2}"; } ;;
    *) echo "MODE is h1, h2, grpc, apikey or jwt" >&2; exit 1 ;;
esac
path=/
extra=""
# h2 modes: up to 400 streams at once, each its own HTTP/1.1 connection to the stub.
stub_extra=""
case $MODE in h1|apikey|jwt) ;; *) stub_extra="max_idle_per_endpoint = 512" ;; esac
if [ "$MODE" = grpc ]; then
    path=/bench.Svc/Unary
    # Before the catch-all route, and only in this mode: the h1 count keeps its config.
    extra="[[upstreams]]
name = \"grpc\"
protocol = \"h2\"
endpoints = [{ address = \"127.0.0.1:$grpc_port\" }]
[[routes]]
name = \"grpc\"
path_prefix = \"/bench.Svc/\"
upstream = \"grpc\""
fi

for driver in "${drivers[@]}"; do
    port=$(free_port)
    cat >"$work/gw.toml" <<EOF
[runtime]
shards = 1
driver = "$driver"
[control]
socket = "$work/ctl.sock"
[[listeners]]
name = "main"
listen = "127.0.0.1:$port"
$extra
[[upstreams]]
name = "stub"
endpoints = [{ address = "127.0.0.1:$stub_port" }]
$stub_extra
$identity
[[routes]]
name = "all"
upstream = "stub"
$route_auth
EOF
    rm -f "$work"/callgrind.out.*
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$work/callgrind.out.%p" \
        "$BIN" run -c "$work/gw.toml" >"$work/gw.log" 2>&1 &
    vg=$!
    pids+=($vg)
    disown
    wait_port "$port"
    url="http://127.0.0.1:$port$path"
    load "$url" --duration 2s >/dev/null 2>&1
    callgrind_control -z "$vg" >/dev/null 2>&1
    secs=$(( REQUESTS / RATE ))
    summary=$(load "$url" --duration "${secs}s" --json 2>/dev/null)
    callgrind_control -d "$vg" >/dev/null 2>&1
    # Every request sent while counting: the measured window's and those still in flight at
    # its end alike passed through the shard.
    done_requests=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests_total"])' "$summary")
    sleep 1
    # An io_uring gateway under valgrind may not stop on SIGTERM; the counts are dumped.
    kill -9 "$vg" 2>/dev/null || true
    # The busiest thread is the shard's.
    best=0
    for f in "$work"/callgrind.out.*; do
        n=$( (grep -m1 -E '^(summary|totals):' "$f" || true) | awk '{print $2}')
        if [ -n "$n" ] && [ "$n" -gt "$best" ]; then best=$n; fi
    done
    echo "$driver $MODE: $((best / done_requests)) instructions per request ($best over $done_requests requests, $(git rev-parse --short HEAD))"
done
