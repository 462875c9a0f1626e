#!/usr/bin/env bash
# One run on a many-core machine, from the project root with the kit in .perfkit/
# (perf/kit_h2.sh): the shared HTTP/1.1 scaling table (proxies on cores 0-7, wrk on 8-11, an
# nginx origin on 12-15), then perf/compare_h2.sh with the proxy alone on core 0, h2load and
# `ringway-perf h2` on cores 8-11 and the upstreams on 12-15. About five minutes; results in
# $OUT (scale.txt, h2.md).
#   WIDTHS="1 4" SCALE_DURATION=6s H2_ROUNDS=3
set -u
KIT=$(cd "$(dirname "$0")" && pwd)
export PATH=$KIT/bin:$PATH
OUT=${OUT:-/tmp}
echo "== machine: $(nproc) CPUs, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo)"
WIDTHS=${WIDTHS:-"1 2 4 8"} DURATION=${SCALE_DURATION:-6s} OUT=$OUT timeout 300 \
    bash "$KIT/scale.sh" 2>&1 | tee "$OUT/scale.log"
echo "== compare_h2"
RINGWAY=$KIT/ringway PERF=$KIT/ringway-perf SKIP_BUILD=1 PROXY_CORES=0 GEN_CORES=8-11 \
    GEN_THREADS=4 CONNECTIONS=4 STUB_CORES=12-15 ROUNDS=${H2_ROUNDS:-3} DURATION=4 WARMUP=1 \
    RESULTS=$OUT/h2.md timeout 340 bash perf/compare_h2.sh 2>&1 | tee "$OUT/h2.log"
