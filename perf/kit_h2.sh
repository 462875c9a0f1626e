#!/usr/bin/env bash
# Adds to the scaling kit (.perfkit/, made by ../shared/scaling/make-kit.sh) what a many-core
# machine needs for the HTTP/2 comparison and what the kit lacks on Debian 12: h2load and its
# libraries, HAProxy's OpenTracing libraries, wrappers in .perfkit/bin that find them, and
# stripped Ringway and ringway-perf release binaries. Then `perf/device.sh` runs there.
#
#   bash ../shared/scaling/make-kit.sh && cargo build --release -p ringway-control -p ringway-perf
#   perf/kit_h2.sh
set -euo pipefail
cd "$(dirname "$0")/.."
kit=$PWD/.perfkit
[ -d "$kit/root" ] || { echo "no kit in $kit: run ../shared/scaling/make-kit.sh first" >&2; exit 1; }
debs=$(mktemp -d)
trap 'rm -rf "$debs"' EXIT
(cd "$debs" && apt-get download nghttp2-client libev4 libjemalloc2 libnghttp2-14 \
    libopentracing-c-wrapper0 libopentracing1 >/dev/null 2>&1) || {
    apt-get update -qq >/dev/null
    (cd "$debs" && apt-get download nghttp2-client libev4 libjemalloc2 libnghttp2-14 \
        libopentracing-c-wrapper0 libopentracing1 >/dev/null)
}
for f in "$debs"/*.deb; do dpkg -x "$f" "$debs/x"; done
cp -a "$debs"/x/usr/bin/h2load "$kit/root/usr/bin/"
find "$debs/x" -name '*.so*' -exec cp -a {} "$kit/lib/" \;
# h2load is C++; the machine may have no libstdc++.
cp -L /lib/x86_64-linux-gnu/libstdc++.so.6 "$kit/lib/"
mkdir -p "$kit/bin"
for b in usr/sbin/nginx usr/sbin/haproxy usr/bin/h2load; do
    cat >"$kit/bin/$(basename "$b")" <<WRAP
#!/bin/sh
k=\$(cd "\$(dirname "\$0")/.." && pwd)
LD_LIBRARY_PATH=\$k/lib:\$k/root/usr/lib/x86_64-linux-gnu exec "\$k/root/$b" "\$@"
WRAP
    chmod +x "$kit/bin/$(basename "$b")"
done
strip -o "$kit/ringway" target/release/ringway
strip -o "$kit/ringway-perf" target/release/ringway-perf
cp perf/device.sh "$kit/device.sh"
for b in nginx haproxy h2load; do
    LD_LIBRARY_PATH=$kit/lib ldd "$kit/bin/../root/usr/"*"/$b" 2>/dev/null | grep 'not found' && exit 1
done
echo "kit ready: $(du -sh "$kit" | cut -f1) in $kit (carry [\".perfkit\"]; run: OUT=\$OUT bash .perfkit/device.sh)"
