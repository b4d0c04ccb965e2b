#!/usr/bin/env bash
# The thread-budget benchmark (docs/benchmarks.md, "The thread budget"):
# the wall time of a fresh run (an empty cache) of the quickstart and of
# benches/threads/resnet-5fold.toml on each thread budget given (default:
# 1, 2 and the machine's cores), and, when FOLDWISE_SEQUENTIAL names a
# foldwise binary built before the budget existed (commit 12ee96f), in
# that binary's order: one node at a time, each on every core.
#
#   benches/threads.sh [BUDGET...]
#
# Each run's report (`run --json`: seconds and threads per node) is kept in
# $OUT (default: a temporary folder), named PIPELINE-jBUDGET.json.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/foldwise"
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"
budgets="${*:-$(printf '%s\n' 1 2 "$(nproc)" | sort -nu)}"

# Runs `$1 … run $2 $4…` on a fresh cache; prints its wall time and the
# load average after it (anything else running on the machine shows there).
timed() {
  local bin=$1 pipeline=$2 name=$3
  shift 3
  local cache
  cache=$(mktemp -d)
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" --cache-dir "$cache" run -q --json "$pipeline" "$@" > "$out/$name.json"
  t1=$(date +%s.%N)
  rm -rf "$cache"
  printf '%-28s %-28s %6.1f s  (load %s)\n' "$(basename "$pipeline")" "$name" \
    "$(echo "$t1 - $t0" | bc)" "$(cut -d' ' -f1 /proc/loadavg)"
}

for pipeline in pipelines/quickstart.toml benches/threads/resnet-5fold.toml; do
  base=$(basename "$pipeline" .toml)
  for b in $budgets; do
    timed "$bin" "$pipeline" "$base-j$b" --threads "$b"
  done
  if [ -n "${FOLDWISE_SEQUENTIAL:-}" ]; then
    timed "$FOLDWISE_SEQUENTIAL" "$pipeline" "$base-sequential"
  fi
done
echo "reports in $out"
