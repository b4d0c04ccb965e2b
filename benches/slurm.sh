#!/usr/bin/env bash
# The Slurm executor's overhead (docs/benchmarks.md, "On a cluster"): a
# 100-node `command` pipeline (a binary tree; each node writes one small
# file) run locally and through Slurm on the single-host cluster that
# .ci/slurm.sh starts (or the cluster SLURM_CONF names), with `squeue`
# calls counted by a shim on PATH.
#
#   benches/slurm.sh [POLL_SECONDS...]    (default: 0.5 5)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target="$(pwd)/$target" ;; esac
bin="$target/release/foldwise"
work=$(mktemp -d)
if [ -z "${SLURM_CONF:-}" ]; then
  # shellcheck source=../.ci/slurm.sh
  source .ci/slurm.sh
  trap '_sl_on_exit; rm -rf "$work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
[ -n "${SLURM_CONF:-}" ] || { echo "no Slurm cluster" >&2; exit 1; }

python3 - "$work/p.toml" <<'PY'
import sys
lines = ['[pipeline]\nname = "tree100"\n']
for i in range(100):
    lines.append(f'[nodes.n{i}]\nkind = "command"')
    if i > 0:
        lines.append(f'inputs = {{ up = "n{(i - 1) // 2}" }}')
    lines.append(f'shell = "echo {i} > \\"$FOLDWISE_OUT/x\\""\n')
open(sys.argv[1], "w").write("\n".join(lines))
PY

mkdir -p "$work/shim"
real_squeue=$(command -v squeue)
cat >"$work/shim/squeue" <<SH
#!/bin/sh
date +%s.%N >> "$work/squeue.calls"
exec "$real_squeue" "\$@"
SH
chmod +x "$work/shim/squeue"

t0=$(date +%s.%N)
"$bin" --cache-dir "$work/local" run -q "$work/p.toml"
local_s=$(echo "$(date +%s.%N) - $t0" | bc)
printf 'local:                     %6.1f s\n' "$local_s"
for poll in ${*:-0.5 5}; do
  : >"$work/squeue.calls"
  t0=$(date +%s.%N)
  PATH="$work/shim:$PATH" "$bin" --cache-dir "$work/slurm-$poll" run -q "$work/p.toml" --executor slurm --slurm-poll "$poll"
  s=$(echo "$(date +%s.%N) - $t0" | bc)
  calls=$(wc -l <"$work/squeue.calls")
  printf 'slurm, poll %4s s:        %6.1f s (%.2f s per job more than locally); %d squeue calls, %.1f per minute\n' \
    "$poll" "$s" "$(echo "($s - $local_s) / 100" | bc -l)" "$calls" "$(echo "$calls * 60 / $s" | bc -l)"
done
