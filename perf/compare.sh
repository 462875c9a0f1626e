#!/usr/bin/env bash
# Ringway side by side with nginx and HAProxy, in one command, on loopback.
#
#   perf/compare.sh                       # 3 rounds, about 8 minutes
#   DURATION=2s ROUNDS=1 perf/compare.sh  # a quick look
#
# Targets, each a reverse proxy in front of the same stub upstream (perf/src/stub.rs), one
# worker / thread / shard each, upstream keep-alive pools, no access logs:
#   stub           the stub upstream itself, no proxy (the ceiling)
#   floor          `ringway-perf relay` (io_uring): a blind relay, one upstream connection per
#                  client connection, bytes moved in lockstep with no parsing, routing, timers
#                  or logs. Not a proxy: what the kernel's TCP alone costs on this layout, the
#                  floor under any proxy's CPU per request. No idle-memory figure (it holds a
#                  64 KiB buffer and an upstream connection per client connection).
#   ringway-uring  ringway, shards = 1, driver = "io_uring"
#   ringway-epoll  ringway, shards = 1, driver = "epoll"
#   nginx          worker_processes 1, upstream keepalive, proxy_http_version 1.1
#   haproxy        nbthread 1, http-reuse always
#
# Every round starts the proxies afresh and runs, interleaved (each test goes over every
# target before the next test, and the target order rotates from round to round):
#   max-small   closed loop, 13-byte responses: req/s
#   max-4k      closed loop, 4 KiB responses: req/s
#   r50, r90    open loop at 50% and 90% of nginx's max-small of the same round: p50, p99,
#               p99.9 latency (from each request's due time, coordinated omission corrected);
#               the r50 run also gives the proxy's CPU seconds per 100k requests
#               (utime + stime from /proc/PID/stat, every process of the proxy), and
#               of them the user-space part (utime): the proxy's own code, without the kernel
#   idle        memory per idle keep-alive connection: RSS growth of the proxy (all its
#               processes) with IDLE_CONNECTIONS idle connections, each after one request
# and prints the medians over the rounds with their spread (min-max) and the ratio to nginx;
# the table also goes to perf/results/latest.md.
#
# CPU layout (env; taskset lists): on 2 cores, the load generator on core 0 and the proxy
# and the stub sharing core 1:
GEN_CORES=${GEN_CORES:-0}
PROXY_CORES=${PROXY_CORES:-1}
STUB_CORES=${STUB_CORES:-1}
# Other knobs:
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4s}          # measured time of each load run
WARMUP=${WARMUP:-1s}              # sent first, not recorded
CONNECTIONS=${CONNECTIONS:-50}    # keep-alive connections of each load run
GEN_THREADS=${GEN_THREADS:-1}     # load generator threads (spread over GEN_CORES)
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
TARGETS=${TARGETS:-"stub floor ringway-uring ringway-epoll nginx haproxy"}
PORT_BASE=${PORT_BASE:-18000}     # ports PORT_BASE+1 .. PORT_BASE+41 on 127.0.0.1
SKIP_BUILD=${SKIP_BUILD:-0}      # 1: use the binaries already in target/release
RESULTS=${RESULTS:-perf/results/latest.md}
#
# Needs: root (or nginx and haproxy already installed), taskset, curl. Stops everything it
# started on exit, however it exits.

set -euo pipefail
cd "$(dirname "$0")/.."

source perf/common.sh

install_missing
raise_fd_limit "$IDLE_CONNECTIONS"
if ((!SKIP_BUILD)); then
    cargo build --release -q -p ringway-control -p ringway-perf
fi
PERF=${PERF:-$PWD/target/release/ringway-perf}
RINGWAY=${RINGWAY:-$PWD/target/release/ringway}
CLK_TCK=$(getconf CLK_TCK)

STUB_SMALL=$((PORT_BASE + 1))
STUB_BIG=$((PORT_BASE + 2))
declare -A PORT=([stub]=$STUB_SMALL [ringway-uring]=$((PORT_BASE + 10))
    [ringway-epoll]=$((PORT_BASE + 11)) [nginx]=$((PORT_BASE + 20)) [haproxy]=$((PORT_BASE + 30))
    [floor]=$((PORT_BASE + 40)))
FLOOR_BIG=$((PORT_BASE + 41))

url() { # target path -> URL; the stub (and the floor relay) serve the two bodies on two ports
    local t=$1 path=$2
    if [[ $t == stub ]]; then
        if [[ $path == /4k ]]; then echo "http://127.0.0.1:$STUB_BIG/4k"; else echo "http://127.0.0.1:$STUB_SMALL/"; fi
    elif [[ $t == floor && $path == /4k ]]; then
        echo "http://127.0.0.1:$FLOOR_BIG/4k"
    else
        echo "http://127.0.0.1:${PORT[$t]}$path"
    fi
}

write_configs() {
    local driver
    for driver in io_uring epoll; do
        local name=ringway-${driver/io_/}
        cat >"$WORK/$name.toml" <<EOF
[runtime]
shards = 1
driver = "$driver"
pin = false        # pinned from outside, with taskset, like the others

[control]
socket = "$WORK/$name.sock"

[[listeners]]
name = "bench"
listen = "127.0.0.1:${PORT[$name]}"
max_connections = 20000

[[upstreams]]
name = "small"
endpoints = [{ address = "127.0.0.1:$STUB_SMALL" }]
max_idle_per_endpoint = 256

[[upstreams]]
name = "big"
endpoints = [{ address = "127.0.0.1:$STUB_BIG" }]
max_idle_per_endpoint = 256

[[routes]]
name = "big"
path_prefix = "/4k"
upstream = "big"

[[routes]]
name = "small"
upstream = "small"
EOF
    done
    mkdir -p "$WORK/nginx"
    {
        nginx_prelude
        cat <<EOF
    upstream small { server 127.0.0.1:$STUB_SMALL; keepalive 256; keepalive_requests 100000000; }
    upstream big { server 127.0.0.1:$STUB_BIG; keepalive 256; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:${PORT[nginx]};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /4k { proxy_pass http://big; }
        location / { proxy_pass http://small; }
    }
}
EOF
    } >"$WORK/nginx.conf"
    cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $(((FD_LIMIT - 200) / 2))
    # no log lines: nothing is logged

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-keep-alive 75s

frontend bench
    bind 127.0.0.1:${PORT[haproxy]}
    use_backend big if { path_beg /4k }
    default_backend small

backend small
    server stub 127.0.0.1:$STUB_SMALL

backend big
    server stub 127.0.0.1:$STUB_BIG
EOF
}

start_target() {
    case $1 in
    stub) ;; # the stubs run the whole time
    ringway-*) start "$1" "$PROXY_CORES" "$RINGWAY" run -c "$WORK/$1.toml" ;;
    floor) start floor "$PROXY_CORES" "$PERF" relay --pair "127.0.0.1:${PORT[floor]}=127.0.0.1:$STUB_SMALL" \
        --pair "127.0.0.1:$FLOOR_BIG=127.0.0.1:$STUB_BIG" ;;
    nginx) start nginx "$PROXY_CORES" nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" ;;
    haproxy) start haproxy "$PROXY_CORES" haproxy -db -f "$WORK/haproxy.cfg" ;;
    esac
    if [[ $1 == stub ]]; then return 0; fi
    wait_port "$1" "${PORT[$1]}"
    local path code
    for path in / /4k; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$(url "$1" "$path")" || true)
        if [[ $code != 200 ]]; then
            log "$1 answered $code on $path; its log:"
            cat "$WORK/$1.log" >&2 || true
            exit 1
        fi
    done
}

RAW=$WORK/raw.tsv # round  metric  target  value
: >"$RAW"

load() { # target path [rate]: one load run; prints its JSON line
    local rate_args=()
    [[ -n ${3:-} ]] && rate_args=(--rate "$3")
    taskset -c "$GEN_CORES" "$PERF" load --url "$(url "$1" "$2")" --connections "$CONNECTIONS" \
        --threads "$GEN_THREADS" --cores "$GEN_CORES" --duration "$DURATION" --warmup "$WARMUP" \
        --json "${rate_args[@]}" 2>/dev/null
}

note_errors() { # target json
    local errors unsent
    errors=$(jget "$2" total)
    unsent=$(jget "$2" unsent)
    record errors "$1" "$errors"
    record unsent "$1" "$unsent"
    if ((errors > 0 || unsent > 0)); then log "  $1: $errors errors, $unsent unsent: $2"; fi
}

# ---------------------------------------------------------------------------- rounds
write_configs
start stub-small "$STUB_CORES" "$PERF" stub --listen "127.0.0.1:$STUB_SMALL" --body 13
start stub-big "$STUB_CORES" "$PERF" stub --listen "127.0.0.1:$STUB_BIG" --body 4096
wait_port stub-small "$STUB_SMALL"
wait_port stub-big "$STUB_BIG"

log "compare: rounds $ROUNDS, $DURATION (+$WARMUP warm-up) per run, $CONNECTIONS connections;" \
    "generator on cores $GEN_CORES, proxies on $PROXY_CORES, stub on $STUB_CORES"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    log "round $ROUND/$ROUNDS"
    order=$(rotate "$ROUND")
    for t in $order; do start_target "$t"; done

    declare -A MAX=()
    for t in $order; do
        json=$(load "$t" /)
        MAX[$t]=$(jget "$json" achieved_rps)
        record max-small "$t" "${MAX[$t]}"
        note_errors "$t" "$json"
        log "  max-small $t ${MAX[$t]}"
    done
    for t in $order; do
        json=$(load "$t" /4k)
        record max-4k "$t" "$(jget "$json" achieved_rps)"
        note_errors "$t" "$json"
        log "  max-4k    $t $(jget "$json" achieved_rps)"
    done
    base=${MAX[nginx]:-${MAX[ringway-uring]:-${MAX[stub]}}}
    for pct in 50 90; do
        rate=$(awk -v m="$base" -v p="$pct" 'BEGIN { printf "%d", m * p / 100 }')
        record "rate-r$pct" all "$rate"
        for t in $order; do
            before=$(cpu_ticks "$t")
            before_user=$(cpu_ticks "$t" user)
            json=$(load "$t" / "$rate")
            after=$(cpu_ticks "$t")
            after_user=$(cpu_ticks "$t" user)
            for q in p50 p99 p99.9; do
                record "r$pct-$q" "$t" "$(jget "$json" "$q")"
            done
            if [[ $pct == 50 ]]; then
                cpu=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$(jget "$json" requests_total)" \
                    'BEGIN { printf "%.3f", (n > 0 ? d / hz / n * 100000 : 0) }')
                record cpu "$t" "$cpu"
                cpu=$(awk -v d=$((after_user - before_user)) -v hz="$CLK_TCK" -v n="$(jget "$json" requests_total)" \
                    'BEGIN { printf "%.3f", (n > 0 ? d / hz / n * 100000 : 0) }')
                record cpu-user "$t" "$cpu"
            fi
            note_errors "$t" "$json"
            log "  r$pct $rate $t p50 $(jget "$json" p50) p99 $(jget "$json" p99) p99.9 $(jget "$json" p99.9)"
        done
    done
    for t in $order; do
        [[ $t == floor ]] && continue
        per=$(idle_memory "$t" "$(url "$t" /)")
        record idle "$t" "$per"
        log "  idle $t $per B/conn"
        sleep 0.5
    done
    for t in $order; do stop "$t"; done
done

# ---------------------------------------------------------------------------- table
ROWS=(
    "max-small|max req/s, 13 B body|rps"
    "max-4k|max req/s, 4 KiB body|rps"
    "r50-p50|p50 at 50% rate|us"
    "r50-p99|p99 at 50% rate|us"
    "r50-p99.9|p99.9 at 50% rate|us"
    "r90-p50|p50 at 90% rate|us"
    "r90-p99|p99 at 90% rate|us"
    "r90-p99.9|p99.9 at 90% rate|us"
    "cpu|CPU s per 100k req (50% rate)|cpu"
    "cpu-user|of which user space|cpu"
    "idle|memory per idle connection|bytes"
)
{
    print_table
    rates=$(awk -F'\t' '$3 == "all" { printf "%s%s", sep, $4; sep = ", " }' "$RAW")
    echo "Medians of $ROUNDS round(s) (min-max) and the ratio to nginx's median." \
        "Fixed rates, 50% and 90% of each round's nginx max req/s (13 B): $rates."
    echo "Each run: $CONNECTIONS keep-alive connections, $DURATION measured after $WARMUP warm-up;" \
        "latency from each request's due time (coordinated omission corrected)."
    echo "Layout: load generator on CPU $GEN_CORES ($GEN_THREADS thread(s)), proxy on CPU $PROXY_CORES, stub on CPU $STUB_CORES;" \
        "memory: $IDLE_CONNECTIONS idle keep-alive connections, RSS growth of all the proxy's processes."
} >"$WORK/table.md"

write_results "$WORK/table.md"
