#!/usr/bin/env bash
# Ringway's TLS termination side by side with nginx (OpenSSL) and HAProxy, in one command, on
# loopback, on the same certificates.
#
#   perf/compare_tls.sh                       # 3 rounds, about 6 minutes
#   DURATION=2s ROUNDS=1 perf/compare_tls.sh  # a quick look
#
# Targets, each terminating TLS on two listeners (one with an ECDSA P-256 certificate, one
# with an RSA 2048 one, both issued by one self-signed CA made here with the openssl CLI) and
# proxying plain HTTP/1.1 to the same stub upstream, one worker / thread / shard each, TLS 1.2
# and 1.3, session tickets on, a session-ID cache of 20,000 entries (nginx: 10 MB shared),
# no access logs:
#   ringway-uring  ringway, shards = 1, driver = "io_uring", rustls on aws-lc-rs
#   ringway-epoll  the same on epoll (not in the default TARGETS)
#   nginx          worker_processes 1, ssl_session_cache shared:SSL:10m, ssl_session_tickets on
#   haproxy        nbthread 1, ssl crt, tune.ssl.cachesize 20000
#
# The client is `ringway-perf load` on an https:// URL (perf/src/tls.rs): it offers X25519
# and AES-128-GCM only, so every server negotiates the same; it checks no certificate (the
# server still signs) and reuses its key share, to stay cheaper than the server per
# handshake. Every round starts the proxies afresh and runs, interleaved (each test over
# every target before the next test, the target order rotating from round to round):
#   full-ecdsa  TLS 1.3 full handshakes/s, ECDSA P-256: closed loop on HS_CONNECTIONS
#               connections, each one handshake, one GET (13-byte body, checked 200), close
#   full-rsa    the same with the RSA 2048 certificate
#   resumed13   TLS 1.3 resumed handshakes/s (PSK from the server's tickets, with X25519)
#   resumed12   TLS 1.2 handshakes/s resumed by session ID (the server's session cache)
#   keepalive   keep-alive requests/s over TLS 1.3: closed loop on CONNECTIONS connections
#   idle        memory per idle TLS connection: RSS growth of the proxy (all its processes)
#               with IDLE_CONNECTIONS idle TLS 1.3 connections, each after one request
# For each run it also records the proxy's CPU per handshake (or per request), how busy the
# proxy's core was and how busy the generator's: a run measures the proxy only while the
# proxy, not the generator, is the one near 100%. It prints the medians over the rounds with
# their spread (min-max) and the ratio to nginx; the table also goes to
# perf/results/latest-tls.md.
#
# CPU layout (env; taskset lists): the proxy on a core to itself; the load generator and the
# stub (one small request per handshake) share the other:
GEN_CORES=${GEN_CORES:-0}
PROXY_CORES=${PROXY_CORES:-1}
STUB_CORES=${STUB_CORES:-0}
# Other knobs:
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4s}          # measured time of each load run
WARMUP=${WARMUP:-1s}              # sent first, not recorded
HS_CONNECTIONS=${HS_CONNECTIONS:-32} # concurrent handshakes of the handshake tests
CONNECTIONS=${CONNECTIONS:-50}    # keep-alive connections of the keepalive test
GEN_THREADS=${GEN_THREADS:-1}     # load generator threads (spread over GEN_CORES)
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
TESTS=${TESTS:-"full-ecdsa full-rsa resumed13 resumed12 keepalive idle"}
TARGETS=${TARGETS:-"ringway-uring nginx haproxy"}
PORT_BASE=${PORT_BASE:-18100}     # ports PORT_BASE+1 .. PORT_BASE+31 on 127.0.0.1
SKIP_BUILD=${SKIP_BUILD:-0}      # 1: use the binaries already in target/release
RESULTS=${RESULTS:-perf/results/latest-tls.md}
#
# Needs: root (or nginx and haproxy already installed), openssl, taskset, curl. Stops
# everything it started on exit, however it exits.

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

STUB=$((PORT_BASE + 1))
declare -A PORT=([ringway-uring]=$((PORT_BASE + 10)) [ringway-epoll]=$((PORT_BASE + 12))
    [nginx]=$((PORT_BASE + 20)) [haproxy]=$((PORT_BASE + 30)))

port_of() { # target key -> port of the target's listener with that key's certificate
    if [[ $2 == rsa ]]; then echo $((PORT[$1] + 1)); else echo "${PORT[$1]}"; fi
}

url() { echo "https://127.0.0.1:$(port_of "$1" "$2")/"; } # target key

# ---------------------------------------------------------------------------- certificates
make_certificates() { # into $WORK/certs: ca, and ecdsa and rsa leaves (.pem, .key, .bundle)
    local d=$WORK/certs key
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=ringway bench CA" -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$d/leaf.ext"
    for key in ecdsa rsa; do
        local new=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
        [[ $key == rsa ]] && new=(-newkey rsa:2048)
        openssl req "${new[@]}" -nodes -subj "/CN=localhost" -keyout "$d/$key.key" \
            -out "$d/$key.csr" 2>/dev/null
        openssl x509 -req -in "$d/$key.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
            -days 2 -extfile "$d/leaf.ext" -out "$d/$key.pem" 2>/dev/null
        cat "$d/$key.pem" "$d/$key.key" >"$d/$key.bundle" # HAProxy: certificate and key
    done
}

# ---------------------------------------------------------------------------- configs
write_configs() {
    local driver name
    for driver in io_uring epoll; do
        name=ringway-${driver/io_/}
        cat >"$WORK/$name.toml" <<EOF
[runtime]
shards = 1
driver = "$driver"
pin = false        # pinned from outside, with taskset, like the others

[control]
socket = "$WORK/$name.sock"

[[listeners]]
name = "tls-ecdsa"
listen = "127.0.0.1:${PORT[$name]}"
max_connections = 20000
[listeners.tls]
certificates = [{ cert = "certs/ecdsa.pem", key = "certs/ecdsa.key" }]
session_tickets = true
session_cache = 20000

[[listeners]]
name = "tls-rsa"
listen = "127.0.0.1:$(port_of "$name" rsa)"
max_connections = 20000
[listeners.tls]
certificates = [{ cert = "certs/rsa.pem", key = "certs/rsa.key" }]
session_tickets = true
session_cache = 20000

[[upstreams]]
name = "small"
endpoints = [{ address = "127.0.0.1:$STUB" }]
max_idle_per_endpoint = 256

[[routes]]
name = "small"
upstream = "small"
EOF
    done
    mkdir -p "$WORK/nginx"
    local server key
    for key in ecdsa rsa; do
        server+="
    server {
        listen 127.0.0.1:$(port_of nginx $key) ssl;
        ssl_certificate $WORK/certs/$key.pem;
        ssl_certificate_key $WORK/certs/$key.key;
        location / { proxy_pass http://small; }
    }"
    done
    {
        nginx_prelude
        cat <<EOF
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    upstream small { server 127.0.0.1:$STUB; keepalive 256; keepalive_requests 100000000; }
$server
}
EOF
    } >"$WORK/nginx.conf"
    cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $(((FD_LIMIT - 200) / 2))
    tune.ssl.cachesize 20000
    ssl-default-bind-options ssl-min-ver TLSv1.2
    # no log lines: nothing is logged

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-keep-alive 75s

frontend tls-ecdsa
    bind 127.0.0.1:${PORT[haproxy]} ssl crt $WORK/certs/ecdsa.bundle
    default_backend small

frontend tls-rsa
    bind 127.0.0.1:$(port_of haproxy rsa) ssl crt $WORK/certs/rsa.bundle
    default_backend small

backend small
    server stub 127.0.0.1:$STUB
EOF
}

start_target() {
    case $1 in
    ringway-*) start "$1" "$PROXY_CORES" "$RINGWAY" run -c "$WORK/$1.toml" ;;
    nginx) start nginx "$PROXY_CORES" nginx -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" ;;
    haproxy) start haproxy "$PROXY_CORES" haproxy -db -f "$WORK/haproxy.cfg" ;;
    *)
        log "unknown target $1"
        exit 1
        ;;
    esac
    local key code
    for key in ecdsa rsa; do
        wait_port "$1" "$(port_of "$1" "$key")"
        code=$(curl -sk --cacert "$WORK/certs/ca.pem" -o /dev/null -w '%{http_code}' "$(url "$1" "$key")" || true)
        if [[ $code != 200 ]]; then
            log "$1 answered $code over TLS ($key); its log:"
            cat "$WORK/$1.log" >&2 || true
            exit 1
        fi
    done
}

# ---------------------------------------------------------------------------- tests
RAW=$WORK/raw.tsv # round  metric  target  value
: >"$RAW"

flags_of() { # test -> "key flags...": the certificate and the load generator's flags
    local once="--requests-per-connection 1 --connections $HS_CONNECTIONS"
    case $1 in
    full-ecdsa) echo "ecdsa $once --tls-version 1.3" ;;
    full-rsa) echo "rsa $once --tls-version 1.3" ;;
    resumed13) echo "ecdsa $once --tls-version 1.3 --resume" ;;
    resumed12) echo "ecdsa $once --tls-version 1.2 --resume" ;;
    keepalive) echo "ecdsa --connections $CONNECTIONS --tls-version 1.3" ;;
    *)
        log "unknown test $1"
        exit 1
        ;;
    esac
}

run_load() { # test target: one load run, recorded
    local test=$1 t=$2 key flags json before after n busy
    read -r key flags <<<"$(flags_of "$test")"
    before=$(cpu_ticks "$t")
    # shellcheck disable=SC2086 # flags are words
    json=$(taskset -c "$GEN_CORES" "$PERF" load --url "$(url "$t" "$key")" $flags \
        --threads "$GEN_THREADS" --cores "$GEN_CORES" --duration "$DURATION" --warmup "$WARMUP" \
        --json 2>/dev/null)
    after=$(cpu_ticks "$t")
    n=$(jget "$json" requests_total)
    record "$test" "$t" "$(jget "$json" achieved_rps)"
    # The proxy's CPU over the whole run (warm-up and start included) per response, and how
    # busy its core was over the run's planned time.
    record "cpu-$test" "$t" "$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$n" \
        'BEGIN { printf "%.1f", (n > 0 ? d / hz / n * 1e6 : 0) }')"
    busy=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v a="$DURATION" -v b="$WARMUP" '
        function secs(x) { return x ~ /ms$/ ? x / 1000 : (x ~ /m$/ ? x * 60 : x + 0) }
        BEGIN { printf "%d", d / hz / (secs(a) + secs(b)) * 100 }')
    record proxy-busy "$t" "$busy"
    record gen-busy "$t" "$(awk -v b="$(jget "$json" generator_busy)" 'BEGIN { printf "%d", b * 100 }')"
    record errors "$t" "$(jget "$json" total)"
    if [[ $test == resumed* ]]; then
        # Handshakes in the window that did not resume: the server refused the session.
        record not-resumed "$t" "$(jget "$json" full)"
    fi
    log "  $test $t $(jget "$json" achieved_rps)/s, proxy $busy% busy," \
        "generator $(jget "$json" generator_busy), errors $(jget "$json" total)," \
        "handshakes full $(jget "$json" full) resumed $(jget "$json" resumed)"
    if (($(jget "$json" total) > 0)); then log "    $json"; fi
}

# ---------------------------------------------------------------------------- rounds
make_certificates
write_configs
start stub-small "$STUB_CORES" "$PERF" stub --listen "127.0.0.1:$STUB" --body 13
wait_port stub-small "$STUB"

log "compare_tls: rounds $ROUNDS, $DURATION (+$WARMUP warm-up) per run, $HS_CONNECTIONS" \
    "concurrent handshakes, $CONNECTIONS keep-alive connections; generator on cores $GEN_CORES," \
    "proxies on $PROXY_CORES, stub on $STUB_CORES"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    log "round $ROUND/$ROUNDS"
    order=$(rotate "$ROUND")
    for t in $order; do start_target "$t"; done
    for test in $TESTS; do
        for t in $order; do
            if [[ $test == idle ]]; then
                per=$(idle_memory "$t" "$(url "$t" ecdsa)" --tls-version 1.3)
                record idle "$t" "$per"
                log "  idle $t $per B/conn"
                sleep 0.5
            else
                run_load "$test" "$t"
            fi
        done
    done
    for t in $order; do stop "$t"; done
done

# ---------------------------------------------------------------------------- table
ROWS=(
    "full-ecdsa|full handshakes/s, ECDSA P-256 (TLS 1.3)|rps"
    "full-rsa|full handshakes/s, RSA 2048 (TLS 1.3)|rps"
    "resumed13|resumed handshakes/s, TLS 1.3 ticket|rps"
    "resumed12|resumed handshakes/s, TLS 1.2 session ID|rps"
    "keepalive|keep-alive req/s over TLS 1.3, 13 B|rps"
    "idle|memory per idle TLS connection|bytes"
    "cpu-full-ecdsa|proxy CPU per full handshake, ECDSA|us"
    "cpu-full-rsa|proxy CPU per full handshake, RSA|us"
    "cpu-resumed13|proxy CPU per resumed handshake, TLS 1.3|us"
    "cpu-resumed12|proxy CPU per resumed handshake, TLS 1.2|us"
    "cpu-keepalive|proxy CPU per keep-alive request|us"
    "proxy-busy|proxy's core busy, all runs (median, min-max)|pct"
    "gen-busy|generator's core busy, all runs (median, min-max)|pct"
    "not-resumed|handshakes not resumed in resumed tests|count"
)
{
    print_table
    echo "Medians of $ROUNDS round(s) (min-max) and the ratio to nginx's median. Handshake tests:" \
        "$HS_CONNECTIONS concurrent connections, each one handshake, one GET and a close;" \
        "keep-alive: $CONNECTIONS connections; each run $DURATION measured after $WARMUP warm-up."
    echo "Client: ringway-perf load, X25519, AES-128-GCM, no certificate checks. A run measures" \
        "the proxy while the proxy's core, not the generator's, is the busy one; a proxy core well" \
        "under 100% with the generator's under it too means something else took the CPU (the" \
        "script's log names the run)."
    echo "Layout: load generator on CPU $GEN_CORES ($GEN_THREADS thread(s)), proxy on CPU $PROXY_CORES," \
        "stub on CPU $STUB_CORES; memory: $IDLE_CONNECTIONS idle TLS 1.3 connections, RSS growth of" \
        "all the proxy's processes. $(openssl version | awk '{print $1, $2}') beside nginx and HAProxy."
} >"$WORK/table.md"

write_results "$WORK/table.md"
