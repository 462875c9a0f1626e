#!/usr/bin/env bash
# HTTP/2 and gRPC-shaped load: Ringway side by side with nginx and HAProxy, on loopback, with
# h2load (nghttp2-client) as the client.
#
#   perf/compare_h2.sh                       # 3 rounds, about 3 minutes
#   DURATION=3 ROUNDS=1 perf/compare_h2.sh   # a quick look
#
# Targets, each one worker / thread / shard, h2c by prior knowledge on its listener:
#   ringway-uring  ringway, shards = 1, driver = "io_uring"
#   ringway-epoll  ringway, shards = 1, driver = "epoll"
#   nginx          worker_processes 1, `listen ... http2` (h2c), upstream keepalive, grpc_pass
#   haproxy        nbthread 1, `proto h2` on the bind, HTTP/1.1 or h2 to the servers
#
# Tests, interleaved (each test over every target before the next, the order rotating from
# round to round):
#   h2-max    GET, 13-byte responses from the HTTP/1.1 stub upstream (perf/src/stub.rs),
#             CONNECTIONS connections with STREAMS streams each: req/s
#   grpc-max  POST /bench.Svc/Unary with a 5-byte gRPC message (content-type application/grpc,
#             te: trailers) to an HTTP/2 upstream: calls/s. The upstream is a second ringway
#             answering every call itself (a `respond` route, 200 application/grpc with a
#             gRPC-framed body), so that every target meets the same h2c upstream.
#
#   h2-p99, grpc-p99  open loop at 50% of nginx's max of the same round (its h2-max or
#             grpc-max), the same connections and streams, with ringway-perf h2 (h2load has
#             no open loop per request nor percentiles): p99 latency counted from each
#             request's due time (coordinated omission corrected).
#
# CPU layout (env; taskset lists): on 2 cores, the proxy on core 1 alone, the load generator
# and the upstreams on core 0.
GEN_CORES=${GEN_CORES:-0}
GEN_THREADS=${GEN_THREADS:-1}     # h2load threads (CONNECTIONS must be a multiple)
PROXY_CORES=${PROXY_CORES:-1}
STUB_CORES=${STUB_CORES:-0}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}           # seconds measured per run
WARMUP=${WARMUP:-1}               # seconds of warm-up per run, not measured
CONNECTIONS=${CONNECTIONS:-4}
STREAMS=${STREAMS:-100}           # concurrent streams per connection
TARGETS=${TARGETS:-"ringway-uring ringway-epoll nginx haproxy"}
P99=${P99:-1}                     # 0: leave out the open-loop latency runs
PORT_BASE=${PORT_BASE:-19000}
SKIP_BUILD=${SKIP_BUILD:-0}
RESULTS=${RESULTS:-perf/results/h2-latest.md}
FD_LIMIT=${FD_LIMIT:-4096}

set -euo pipefail
cd "$(dirname "$0")/.."

source perf/common.sh

install_missing
command -v h2load >/dev/null || { log "h2load is needed (apt-get install nghttp2-client)"; exit 1; }
if ((!SKIP_BUILD)); then
    cargo build --release -q -p ringway-control -p ringway-perf
fi
PERF=${PERF:-$PWD/target/release/ringway-perf}
RINGWAY=${RINGWAY:-$PWD/target/release/ringway}

STUB=$((PORT_BASE + 1))
GRPC_UP=$((PORT_BASE + 2))
declare -A PORT=([ringway-uring]=$((PORT_BASE + 10)) [ringway-epoll]=$((PORT_BASE + 11))
    [nginx]=$((PORT_BASE + 20)) [haproxy]=$((PORT_BASE + 30)))

write_configs() {
    local driver name
    # The gRPC upstream: answers every call with an empty gRPC message.
    cat >"$WORK/grpc-up.toml" <<EOF
[runtime]
shards = 1
driver = "epoll"
pin = false
[control]
socket = "$WORK/grpc-up.sock"
[[listeners]]
name = "up"
listen = "127.0.0.1:$GRPC_UP"
[[routes]]
name = "answer"
respond = { status = 200, headers = { content-type = "application/grpc", grpc-status = "0" }, body = "\u0000\u0000\u0000\u0000\u0000" }
EOF
    for driver in io_uring epoll; do
        name=ringway-${driver/io_/}
        cat >"$WORK/$name.toml" <<EOF
[runtime]
shards = 1
driver = "$driver"
pin = false

[control]
socket = "$WORK/$name.sock"

[[listeners]]
name = "bench"
listen = "127.0.0.1:${PORT[$name]}"

[[upstreams]]
name = "stub"
endpoints = [{ address = "127.0.0.1:$STUB" }]
max_idle_per_endpoint = 512

[[upstreams]]
name = "grpc"
protocol = "h2"
endpoints = [{ address = "127.0.0.1:$GRPC_UP" }]

[[routes]]
name = "grpc"
path_prefix = "/bench.Svc/"
upstream = "grpc"

[[routes]]
name = "stub"
upstream = "stub"
EOF
    done
    mkdir -p "$WORK/nginx"
    {
        nginx_prelude
        cat <<EOF
    http2_max_concurrent_streams 128;
    upstream stub { server 127.0.0.1:$STUB; keepalive 512; keepalive_requests 100000000; }
    upstream grpcup { server 127.0.0.1:$GRPC_UP; keepalive 64; keepalive_requests 100000000; }
    server {
        # h2c by prior knowledge (the listen flag: nginx before 1.25 has no "http2 on").
        listen 127.0.0.1:${PORT[nginx]} http2;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /bench.Svc/ { grpc_pass grpc://grpcup; }
        location / { proxy_pass http://stub; }
    }
}
EOF
    } >"$WORK/nginx.conf"
    cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 2000

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 75s
    timeout server 75s

frontend bench
    bind 127.0.0.1:${PORT[haproxy]} proto h2
    use_backend grpcup if { path_beg /bench.Svc/ }
    default_backend stub

backend stub
    server stub 127.0.0.1:$STUB

backend grpcup
    server up 127.0.0.1:$GRPC_UP proto h2
EOF
}

start_target() {
    case $1 in
    ringway-*) start "$1" "$PROXY_CORES" "$RINGWAY" run -c "$WORK/$1.toml" ;;
    nginx) start nginx "$PROXY_CORES" nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" ;;
    haproxy) start haproxy "$PROXY_CORES" haproxy -db -f "$WORK/haproxy.cfg" ;;
    esac
    wait_port "$1" "${PORT[$1]}"
    local out
    out=$(h2load -n 1 -c 1 "http://127.0.0.1:${PORT[$1]}/" 2>&1 || true)
    if ! grep -q 'status codes: 1 2xx' <<<"$out"; then
        log "$1 did not answer 200 over h2c:"
        log "$out"
        cat "$WORK/$1.log" >&2 || true
        exit 1
    fi
}

RAW=$WORK/raw.tsv
: >"$RAW"
printf '\0\0\0\0\0' >"$WORK/grpc-request.bin"

h2run() { # target path [h2load flags...] -> "req/s failed"
    local t=$1 path=$2 out
    shift 2
    out=$(taskset -c "$GEN_CORES" h2load -t "$GEN_THREADS" -c "$CONNECTIONS" -m "$STREAMS" -D "$DURATION" \
        --warm-up-time "$WARMUP" "$@" "http://127.0.0.1:${PORT[$t]}$path" 2>&1) || true
    local rps failed
    rps=$(grep -o 'finished in [^,]*, [0-9.]* req/s' <<<"$out" | awk '{print $(NF-1)}')
    failed=$(grep -o '[0-9]* failed' <<<"$out" | head -1 | awk '{print $1}')
    if [[ -z $rps ]]; then
        log "  h2load on $t gave no rate:"
        log "$out"
        rps=0
    fi
    echo "$rps ${failed:-0}"
}

p99run() { # target path rate [flags...] -> the JSON summary of an open-loop run
    local t=$1 path=$2 rate=$3
    shift 3
    taskset -c "$GEN_CORES" "$PERF" h2 --url "http://127.0.0.1:${PORT[$t]}$path" \
        --connections "$CONNECTIONS" --streams "$STREAMS" --threads "$GEN_THREADS" \
        --rate "$rate" --duration "${DURATION}s" --warmup "${WARMUP}s" --json "$@" 2>/dev/null ||
        echo '{}'
}

write_configs
start stub "$STUB_CORES" "$PERF" stub --listen "127.0.0.1:$STUB" --body 13
start grpc-up "$STUB_CORES" "$RINGWAY" run -c "$WORK/grpc-up.toml"
wait_port stub "$STUB"
wait_port grpc-up "$GRPC_UP"

log "compare_h2: rounds $ROUNDS, ${DURATION}s (+${WARMUP}s warm-up) per run," \
    "$CONNECTIONS connections x $STREAMS streams; generator on cores $GEN_CORES, upstreams on $STUB_CORES," \
    "proxies on $PROXY_CORES"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    log "round $ROUND/$ROUNDS"
    order=$(rotate "$ROUND")
    for t in $order; do start_target "$t"; done
    declare -A H2MAX=() GRPCMAX=()
    for t in $order; do
        read -r rps failed < <(h2run "$t" /)
        H2MAX[$t]=$rps
        record h2-max "$t" "$rps"
        record errors "$t" "$failed"
        log "  h2-max   $t $rps req/s ($failed failed)"
    done
    for t in $order; do
        read -r rps failed < <(h2run "$t" /bench.Svc/Unary -d "$WORK/grpc-request.bin" \
            -H 'content-type: application/grpc' -H 'te: trailers')
        GRPCMAX[$t]=$rps
        record grpc-max "$t" "$rps"
        record errors "$t" "$failed"
        log "  grpc-max $t $rps calls/s ($failed failed)"
    done
    if ((P99)); then
        for test in h2 grpc; do
            if [[ $test == h2 ]]; then base=${H2MAX[nginx]:-${H2MAX[ringway-uring]}}; path=/; flags=()
            else base=${GRPCMAX[nginx]:-${GRPCMAX[ringway-uring]}}; path=/bench.Svc/Unary; flags=(--grpc); fi
            rate=$(awk -v m="$base" 'BEGIN { printf "%d", m / 2 }')
            record "rate-$test" all "$rate"
            for t in $order; do
                json=$(p99run "$t" "$path" "$rate" "${flags[@]}")
                record "$test-p99" "$t" "$(jget "$json" p99)"
                record errors "$t" "$(jget "$json" total)"
                record errors "$t" "$(jget "$json" unsent)"
                log "  $test-p99 $t at $rate/s: p50 $(jget "$json" p50) p99 $(jget "$json" p99) us"
            done
        done
    fi
    for t in $order; do stop "$t"; done
done

ROWS=(
    "h2-max|h2 GET req/s, 13 B body, h1 upstream|rps"
    "grpc-max|gRPC-shaped unary calls/s, h2 upstream|rps"
    "h2-p99|h2 GET p99 at 50% of nginx's max|us"
    "grpc-p99|gRPC-shaped p99 at 50% of nginx's max|us"
)
{
    print_table
    echo "Medians of $ROUNDS round(s) (min-max) and the ratio to nginx's median. h2load: $GEN_THREADS thread(s)," \
        "$CONNECTIONS connections x $STREAMS concurrent streams, ${DURATION}s after ${WARMUP}s warm-up."
    echo "Layout: proxy alone on CPU $PROXY_CORES; h2load and ringway-perf h2 on CPU $GEN_CORES; the HTTP/1.1 stub and the h2 upstream on CPU $STUB_CORES."
} >"$WORK/table.md"
write_results "$WORK/table.md"
