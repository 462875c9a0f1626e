#!/usr/bin/env bash
# Runs every fuzz target (or those named after the time) for SECONDS each, default 60:
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
# Installs cargo-fuzz if it is missing. Only the stable toolchain exists here, and the
# sanitizer flags cargo-fuzz passes are nightly-only: RUSTC_BOOTSTRAP=1 lets stable take them.
# New inputs a run finds go to a scratch corpus (the checked-in seeds in corpus/<target> stay
# as they are); a crash stops the script with the fuzzer's report, and its input is left in
# artifacts/<target>/ (add it to corpus/<target> once fixed). Niced, so that builds on the
# same machine keep their CPU.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir .)
fi

# -a: debug assertions (integer overflow panics, debug_assert!) are on while fuzzing.
echo "== cargo fuzz build"
nice -n 19 cargo fuzz build --fuzz-dir . -a

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${seconds}s"
    mkdir -p "$scratch/$target"
    nice -n 19 cargo fuzz run --fuzz-dir . -a "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "== fuzz: no crash in ${#targets[@]} targets"
