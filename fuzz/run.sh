#!/bin/sh
# Runs fuzz targets for a bounded time each, niced, on the seeds in seeds/TARGET
# (read-only) plus the working corpus in corpus/TARGET (git-ignored).
#   fuzz/run.sh [SECONDS] [TARGET...]      default: 60 s, every target in Cargo.toml
# Stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags.
set -eu
cd "$(dirname "$0")"
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-$(RUSTC_BOOTSTRAP=1 cargo fuzz list)}
for t in $targets; do
    mkdir -p "corpus/$t"
    RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz run -s none -a "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -timeout=60 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1
done
