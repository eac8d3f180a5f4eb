#!/usr/bin/env bash
# What recording the A66 gRPC metrics costs, decided by instruction counts instead of time
# (docs/observability.md, "Recorder cost in instructions"): builds zone-bench (release) and runs
# `zone-bench metrics-count`, which runs a bounded workload (unary 64 B c=32, 64 KiB server
# stream; client and server in one process) under valgrind's callgrind per wire, with metrics-http's
# Prometheus recorder installed and with none, and writes target/zone-bench/metrics-count/.
# Extra arguments go to zone-bench (e.g. `--wire h3`, `--calls 4000`, `--out DIR`).
# Without valgrind it prints why and exits 0 (hardware counters are often missing in VMs, so
# `perf stat` is no substitute there).
set -euo pipefail

if ! command -v valgrind >/dev/null 2>&1; then
    echo "metrics-count: skipped: valgrind is not installed (apt-get install valgrind)" >&2
    exit 0
fi
cd "$(dirname "$0")/.."
nice cargo build --release -p zone-bench
target_dir="${CARGO_TARGET_DIR:-target}"
exec nice "$target_dir/release/zone-bench" metrics-count "$@"
