#!/usr/bin/env bash
# The Slurm executor's overhead (docs/benchmarks.md, "On a cluster"): a
# 100-node `command` pipeline (a binary tree; each node writes one small
# file) run locally and through Slurm on the single-host cluster that
# .ci/slurm.sh starts (or the cluster SLURM_CONF names), with `squeue`
# calls counted by a shim on PATH. Where a job's time goes comes from
# timestamps: `sbatch` calls (a shim), each command's start (the command
# writes it), each job's exit file (its mtime) and the `squeue` calls; the
# part of a job that is foldwise itself before its command is timed
# outside Slurm (`run NODE --only --force NODE`).
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

mkdir -p "$work/starts"
python3 - "$work/p.toml" "$work/starts" <<'PY'
import sys
lines = ['[pipeline]\nname = "tree100"\n']
for i in range(100):
    lines.append(f'[nodes.n{i}]\nkind = "command"')
    if i > 0:
        lines.append(f'inputs = {{ up = "n{(i - 1) // 2}" }}')
    lines.append(f'shell = "date +%s.%N > {sys.argv[2]}/$FOLDWISE_INSTANCE; echo {i} > \\"$FOLDWISE_OUT/x\\""\n')
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
real_sbatch=$(command -v sbatch)
cat >"$work/shim/sbatch" <<SH
#!/bin/sh
t=\$(date +%s.%N)
out=\$("$real_sbatch" "\$@") || exit \$?
for a in "\$@"; do s=\$a; done
echo "\$(basename "\$s" .sh) \$t \$(date +%s.%N) \$out" >> "$work/sbatch.calls"
echo "\$out"
SH
chmod +x "$work/shim/sbatch"

t0=$(date +%s.%N)
"$bin" --cache-dir "$work/local" run -q "$work/p.toml"
local_s=$(echo "$(date +%s.%N) - $t0" | bc)
printf 'local:                     %6.1f s\n' "$local_s"
# foldwise's own part of a job, before its command: start, load, inputs.
for i in 1 2 3 4 5 6 7 8 9; do
  t0=$(date +%s.%N)
  "$bin" --cache-dir "$work/local" --no-color run "$work/p.toml" "n9$i" --only --executor local -q --force "n9$i"
  echo "$t0 $(cat "$work/starts/n9$i")" >>"$work/pre.times"
done
polls=("$@")
[ $# -gt 0 ] || polls=(0.5 5)
for poll in "${polls[@]}"; do
  : >"$work/squeue.calls"
  : >"$work/sbatch.calls"
  rm -f "$work/starts/"*
  t0=$(date +%s.%N)
  PATH="$work/shim:$PATH" "$bin" --cache-dir "$work/slurm-$poll" run -q "$work/p.toml" --executor slurm --slurm-poll "$poll"
  s=$(echo "$(date +%s.%N) - $t0" | bc)
  calls=$(wc -l <"$work/squeue.calls")
  printf 'slurm, poll %4s s:        %6.1f s (%.2f s per job more than locally); %d squeue calls, %.1f per minute\n' \
    "$poll" "$s" "$(echo "($s - $local_s) / 100" | bc -l)" "$calls" "$(echo "$calls * 60 / $s" | bc -l)"
  python3 - "$work" "$poll" "$(dirname "$SLURM_CONF")/slurmctld.log" <<'PY'
import datetime, glob, os, re, statistics, sys
work, poll, ctld = sys.argv[1:4]
med = statistics.median
pre = med(float(b) - float(a) for a, b in (l.split() for l in open(f"{work}/pre.times")))
sb, ids = {}, {}
for l in open(f"{work}/sbatch.calls"):
    t, a, b, jid = l.split()
    sb[t] = (float(a), float(b))
    ids[jid.split(";")[0]] = t
polls = sorted(float(l) for l in open(f"{work}/squeue.calls"))
exits = {os.path.basename(f)[:-5]: os.stat(f).st_mtime_ns / 1e9
         for f in glob.glob(f"{work}/slurm-{poll}/slurm/*/*.exit")}
start = {t: float(open(f"{work}/starts/{t}").read()) - pre for t in sb}
noticed = {t: next((q for q in polls if q > e), e) for t, e in exits.items()}
# slurmctld's own times (ms): allocation and completion of each job.
alloc, done = {}, {}
stamp = re.compile(r"^\[([0-9T:.-]+)\] (.*)$")
for line in open(ctld):
    m = stamp.match(line)
    if not m:
        continue
    when = datetime.datetime.fromisoformat(m.group(1)).timestamp()
    a = re.search(r"(?:Allocate|Started) JobId=(\d+)", m.group(2))
    c = re.search(r"_job_complete: JobId=(\d+) done", m.group(2))
    if a and a.group(1) in ids:
        alloc.setdefault(ids[a.group(1)], when)
    if c and c.group(1) in ids:
        done[ids[c.group(1)]] = when
freed = sorted(done.values())
def wait_for_slot(t):
    ready = max([sb[t][1]] + [c for c in freed if c <= alloc[t]][-1:])
    return alloc[t] - ready
rows = [
    ("sbatch call", [b - a for a, b in sb.values()]),
    ("allocation, after submission or a slot freeing (slurmctld)", [wait_for_slot(t) for t in alloc]),
    ("launch: allocated until foldwise starts (slurmd, slurmstepd)", [start[t] - alloc[t] for t in alloc]),
    ("foldwise before the command (start, load, inputs)", [pre]),
    ("the command, its commit and the exit file", [exits[t] - start[t] - pre for t in sb]),
    ("exit file until slurmctld records the job complete", [done[t] - exits[t] for t in done]),
    ("exit file until the orchestrator's squeue sees the job end", [noticed[t] - exits[t] for t in sb]),
]
kids = {f"n{i}": f"n{(i - 1) // 2}" for i in range(1, 100)}
rows.append(("parent's end seen until the child's sbatch", [sb[c][0] - noticed[p] for c, p in kids.items()]))
print(f"  where a job's time goes (poll {poll} s; medians over 100 jobs; "
      f"{len(alloc)} allocations and {len(done)} completions in slurmctld.log):")
for name, xs in rows:
    print(f"    {name:62s} {med(xs):6.3f} s" if xs else f"    {name:62s}      -")
PY
done
