# Helpers that compare.sh and compare_tls.sh share: sourced (after `set -euo pipefail`), not
# run. Sourcing it makes a temporary folder $WORK and a trap that, however the script exits,
# stops every process started with `start` and removes $WORK.
#
# The sourcing script sets, before calling the helpers that use them: TARGETS (rotate, the
# table), ROUNDS and ROUND (record), RAW (record, summary), MAIN_PID[stub-small] (pids_of
# stub), and for print_table the ROWS array ("metric|label|unit" each).

WORK=$(mktemp -d /tmp/ringway-compare.XXXXXX)
declare -A MAIN_PID=() # name -> pid of each process started and not yet stopped
POLICY_RC_CREATED=0
cleanup() {
    local pid
    for pid in "${MAIN_PID[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.3
    for pid in "${MAIN_PID[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if ((POLICY_RC_CREATED)); then rm -f /usr/sbin/policy-rc.d; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }

install_missing() { # nginx (nginx-light) and haproxy from Debian packages, services not started
    local need=()
    command -v nginx >/dev/null || need+=(nginx)
    command -v haproxy >/dev/null || need+=(haproxy)
    ((${#need[@]})) || return 0
    log "installing ${need[*]} from Debian packages"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # Keep the packages from starting their system services: we start our own.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    apt-get update -qq
    local pkgs=()
    for p in "${need[@]}"; do
        if [[ $p == nginx ]]; then pkgs+=(nginx-light); else pkgs+=("$p"); fi
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

raise_fd_limit() { # idle-connections: sets FD_LIMIT, fails when it is too low for them
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    FD_LIMIT=$(ulimit -n)
    if ((FD_LIMIT < 2 * $1 + 1000)); then
        log "open-file limit $FD_LIMIT is too low for $1 idle connections"
        exit 1
    fi
}

wait_port() { # name port: until it accepts, up to 10 s, while the process lives
    local i
    for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        kill -0 "${MAIN_PID[$1]}" 2>/dev/null || break
        sleep 0.1
    done
    log "$1: nothing listens on port $2; its log:"
    cat "$WORK/$1.log" >&2 || true
    exit 1
}

start() { # name cores command...: runs it pinned, in the background, remembers its pid
    local name=$1 cores=$2
    shift 2
    taskset -c "$cores" "$@" >"$WORK/$name.log" 2>&1 &
    MAIN_PID[$name]=$!
}

stop() { # name
    local pid=${MAIN_PID[$1]:-}
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "MAIN_PID[$1]"
}

pids_of() { # target: every process of it (nginx: master and workers)
    local t=$1 main
    if [[ $t == stub ]]; then main=${MAIN_PID[stub-small]}; else main=${MAIN_PID[$t]}; fi
    echo "$main"
    pgrep -P "$main" || true
}

cpu_ticks() { # target [user]: utime + stime (or utime alone) of all its processes
    local total=0 pid fields='$14 + $15'
    [[ ${2:-} == user ]] && fields='$14'
    for pid in $(pids_of "$1"); do
        total=$((total + $(awk "{print $fields}" "/proc/$pid/stat")))
    done
    echo "$total"
}

nginx_prelude() { # the start of every nginx.conf here: one worker, no logs, temp paths in $WORK; opens `http {`
    cat <<EOF
worker_processes 1;
daemon off;
user root;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
worker_rlimit_nofile $FD_LIMIT;
events { worker_connections $((FD_LIMIT / 2)); }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
EOF
}

rss_kib() { # target: resident memory of all its processes
    local total=0 pid
    for pid in $(pids_of "$1"); do
        total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")))
    done
    echo "$total"
}

jget() { # json key -> number (the first field of that name)
    grep -o "\"$2\":[0-9.]*" <<<"$1" | head -1 | cut -d: -f2
}

record() { printf '%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" >>"$RAW"; } # metric target value

rotate() { # round -> the targets, starting at a different one each round
    local -a t=($TARGETS)
    local n=${#t[@]} i
    for ((i = 0; i < n; i++)); do echo "${t[$(((i + $1) % n))]}"; done
}

idle_memory() { # target url [idle flags...] -> bytes of RSS growth per idle connection
    # Opens IDLE_CONNECTIONS keep-alive connections on GEN_CORES, one request each, and reads
    # the target's RSS once they are all open; failures are logged.
    local t=$1 url=$2 before after open failed i
    shift 2
    before=$(rss_kib "$t")
    rm -f "$WORK/idle.out"
    taskset -c "$GEN_CORES" "$PERF" idle --url "$url" --connections "$IDLE_CONNECTIONS" \
        --cores "$GEN_CORES" --hold 60s "$@" >"$WORK/idle.out" 2>&1 &
    MAIN_PID[idle]=$!
    for i in $(seq 600); do
        grep -q '^ready' "$WORK/idle.out" 2>/dev/null && break
        kill -0 "${MAIN_PID[idle]}" 2>/dev/null || break
        sleep 0.1
    done
    sleep 0.5 # let the server settle after the last request
    after=$(rss_kib "$t")
    read -r _ open failed < <(grep '^ready' "$WORK/idle.out" || echo "ready 0 $IDLE_CONNECTIONS")
    stop idle
    if ((failed > 0)); then
        log "  idle: $t: $failed of $IDLE_CONNECTIONS connections failed:"
        cat "$WORK/idle.out" >&2
    fi
    awk -v d=$((after - before)) -v n="$open" 'BEGIN { printf "%d", (n > 0 ? d * 1024 / n : 0) }'
}

summary() { # metric target -> "median min max" (empty when none)
    awk -F'\t' -v m="$1" -v t="$2" '$2 == m && $3 == t { print $4 }' "$RAW" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) { med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print med, v[1], v[NR] } }'
}

fmt() { # value unit -> short text
    awk -v v="$1" -v u="$2" 'BEGIN {
        if (u == "rps") { if (v >= 1000) printf "%.1fk", v / 1000; else printf "%d", v }
        else if (u == "us") { if (v >= 1000) printf "%.2fms", v / 1000; else printf "%dus", v }
        else if (u == "cpu") printf "%.2fs", v
        else if (u == "pct") printf "%d%%", v
        else if (u == "bytes") { if (v >= 10240) printf "%.1fKiB", v / 1024; else printf "%dB", v }
        else printf "%s", v }'
}

print_table() { # the ROWS over TARGETS: median (min-max) and the ratio to nginx's median
    local -a T
    local t row metric label unit nginx_med med lo hi cell
    read -r -a T <<<"$TARGETS"
    printf '| metric |'
    for t in "${T[@]}"; do printf ' %s |' "$t"; done
    printf '\n|---|'
    for t in "${T[@]}"; do printf -- '---|'; done
    printf '\n'
    for row in "${ROWS[@]}"; do
        IFS='|' read -r metric label unit <<<"$row"
        # A metric no run recorded (a test left out) gets no row.
        awk -F'\t' -v m="$metric" '$2 == m { found = 1 } END { exit !found }' "$RAW" || continue
        printf '| %s |' "$label"
        read -r nginx_med _ <<<"$(summary "$metric" nginx)"
        for t in "${T[@]}"; do
            read -r med lo hi <<<"$(summary "$metric" "$t")"
            if [[ -z ${med:-} ]]; then
                printf ' - |'
                continue
            fi
            cell="$(fmt "$med" "$unit")"
            # Shares (pct) pool every run of a round: their spread shows even in one round.
            if ((ROUNDS > 1)) || [[ $unit == pct ]]; then
                cell+=" ($(fmt "$lo" "$unit")-$(fmt "$hi" "$unit"))"
            fi
            if [[ $unit != pct && $unit != count && -n ${nginx_med:-} ]] && awk -v n="$nginx_med" 'BEGIN { exit !(n > 0) }'; then
                cell+=" $(awk -v a="$med" -v b="$nginx_med" 'BEGIN { printf "%.2fx", a / b }')"
            fi
            printf ' %s |' "$cell"
        done
        printf '\n'
    done
    printf '| errors + unsent (all runs) |'
    for t in "${T[@]}"; do
        printf ' %s |' "$(awk -F'\t' -v t="$t" '($2 == "errors" || $2 == "unsent") && $3 == t { s += $4 } END { print s + 0 }' "$RAW")"
    done
    printf '\n\n'
}

write_results() { # table-file: $RESULTS (with a header) and its .tsv, then prints it
    mkdir -p "$(dirname "$RESULTS")"
    {
        echo "# perf/$(basename "$0"): $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
        echo
        echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), HAProxy $(haproxy -v | head -1 | awk '{print $3}'), $(nproc) CPUs, $(uname -r)"
        echo
        cat "$1"
    } >"$RESULTS"
    cp "$RAW" "${RESULTS%.md}.tsv"
    cat "$RESULTS"
}
