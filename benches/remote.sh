#!/usr/bin/env bash
# The remote-cache benchmark (docs/benchmarks.md, "Sharing a cache"), on the
# quickstart:
#
#   benches/remote.sh [URL...]
#
# URLs default to a shared folder (file://…) and, when SeaweedFS can be
# started (.ci/seaweedfs.sh), an S3 prefix on it. For each remote it
# prints: computing every node on an empty cache, the first push, a second
# push (bytes moved: must be 0), `status` on an empty cache (requests by
# kind, from FOLDWISE_REMOTE_TRACE; then again), pulling every node into an
# empty cache (and that the pulled cache is fresh with the same keys and
# digests), and ten SIGKILLs at random moments of a push, then of a pull,
# each followed by `foldwise verify` of the local cache, then the push and
# pull run to the end, and a pull of everything into another empty cache
# reads the whole remote back. COMPUTED=DIR COMPUTE_SECONDS=S reuse a cache
# where the quickstart has run, and how long that took.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="$(pwd)/${CARGO_TARGET_DIR:-target}/release/foldwise"
pipeline="$(pwd)/pipelines/quickstart.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

computed=${COMPUTED:-}
if [ -z "$computed" ]; then
  computed="$work/computed"
  t0=$(now)
  "$bin" --cache-dir "$computed" run -q --json "$pipeline" >"$work/run.json"
  compute=$(since "$t0")
else
  compute=${COMPUTE_SECONDS:?COMPUTED needs COMPUTE_SECONDS: how long computing it took}
fi
printf 'compute every node (empty cache): %.1f s\n' "$compute"

urls=("$@")
if [ ${#urls[@]} -eq 0 ]; then
  urls=("file://$work/folder-remote")
  if [ -z "${FOLDWISE_TEST_S3_ENDPOINT:-}" ]; then
    # shellcheck source=../.ci/seaweedfs.sh
    source .ci/seaweedfs.sh
    trap '_sw_stop; rm -rf "$work"' EXIT
  fi
  if [ -n "${FOLDWISE_TEST_S3_ENDPOINT:-}" ]; then
    export AWS_ENDPOINT_URL=$FOLDWISE_TEST_S3_ENDPOINT AWS_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=$FOLDWISE_TEST_S3_KEY AWS_SECRET_ACCESS_KEY=$FOLDWISE_TEST_S3_SECRET
    urls+=("s3://$FOLDWISE_TEST_S3_BUCKET/bench-$$")
  fi
fi

field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
count() { python3 -c 'import json,sys; print(len(json.load(sys.stdin)[sys.argv[1]]))' "$1"; }
requests() { grep '^remote: ' | awk '{print $2}' | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}' | sed 's/, $//'; }

for url in "${urls[@]}"; do
  echo
  echo "== $url"
  t0=$(now)
  "$bin" --cache-dir "$computed" push "$pipeline" --remote "$url" --json >"$work/push1.json"
  printf 'push (first):  %6.2f s, %s artifacts, %s files, %s bytes\n' "$(since "$t0")" \
    "$(count moved <"$work/push1.json")" "$(field files <"$work/push1.json")" "$(field bytes <"$work/push1.json")"
  t0=$(now)
  "$bin" --cache-dir "$computed" push "$pipeline" --remote "$url" --json >"$work/push2.json"
  printf 'push (again):  %6.2f s, %s artifacts, %s files, %s bytes moved\n' "$(since "$t0")" \
    "$(count moved <"$work/push2.json")" "$(field files <"$work/push2.json")" "$(field bytes <"$work/push2.json")"

  empty="$work/empty-$RANDOM"
  t0=$(now)
  FOLDWISE_REMOTE_TRACE=1 "$bin" --cache-dir "$empty" status "$pipeline" --remote "$url" >"$work/status.txt" 2>"$work/trace1"
  printf 'status (empty cache):  %6.2f s, requests: %s; %s\n' "$(since "$t0")" "$(requests <"$work/trace1")" "$(tail -1 "$work/status.txt")"
  t0=$(now)
  FOLDWISE_REMOTE_TRACE=1 "$bin" --cache-dir "$empty" status "$pipeline" --remote "$url" >/dev/null 2>"$work/trace2"
  printf 'status (again):        %6.2f s, requests: %s\n' "$(since "$t0")" "$(requests <"$work/trace2")"

  pulled="$work/pulled-$RANDOM"
  t0=$(now)
  "$bin" --cache-dir "$pulled" pull "$pipeline" --remote "$url" --json >"$work/pull.json"
  pull=$(since "$t0")
  printf 'pull every node (empty cache): %6.2f s, %s artifacts, %s files, %s bytes: %.0fx faster than computing\n' "$pull" \
    "$(count moved <"$work/pull.json")" "$(field files <"$work/pull.json")" "$(field bytes <"$work/pull.json")" \
    "$(echo "$compute / $pull" | bc -l)"
  "$bin" --cache-dir "$pulled" status "$pipeline" --no-remote --json >"$work/st-pulled.json"
  "$bin" --cache-dir "$computed" status "$pipeline" --no-remote --json >"$work/st-computed.json"
  python3 - "$work/st-pulled.json" "$work/st-computed.json" <<'EOF'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
assert all(s["stale"] is None for s in a), "the pulled cache is not all fresh"
assert [(s["instance"], s["key"]) for s in a] == [(s["instance"], s["key"]) for s in b]
print(f"pulled cache: {len(a)} instances fresh, the same keys as where they were computed")
EOF

  # SIGKILL at random moments: a push to a fresh prefix (or folder), then a pull.
  target="${url%/}-kill-$RANDOM"
  victim="$work/victim-$RANDOM"
  for i in $(seq 10); do
    "$bin" --cache-dir "$computed" push "$pipeline" --remote "$target" -q >/dev/null 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 900 + 50))"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  "$bin" --cache-dir "$computed" push "$pipeline" --remote "$target" --json >"$work/push-k.json"
  printf 'push after 10 SIGKILLs: completed, %s artifacts moved now, %s already there\n' \
    "$(count moved <"$work/push-k.json")" "$(count skipped <"$work/push-k.json")"
  bad=0
  for i in $(seq 10); do
    "$bin" --cache-dir "$victim" pull "$pipeline" --remote "$target" >/dev/null 2>&1 &
    pid=$!
    sleep "0.$((RANDOM % 900 + 50))"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    "$bin" --cache-dir "$victim" verify >/dev/null || bad=$((bad + 1))
  done
  "$bin" --cache-dir "$victim" pull "$pipeline" --remote "$target" --json >"$work/pull-k.json"
  "$bin" --cache-dir "$victim" verify >/dev/null || bad=$((bad + 1))
  printf 'pull after 10 SIGKILLs: completed, %s artifacts moved now, %s already here; verify found damage %s time(s)\n' \
    "$(count moved <"$work/pull-k.json")" "$(count skipped <"$work/pull-k.json")" "$bad"
  whole="$work/whole-$RANDOM"
  "$bin" --cache-dir "$whole" pull "$pipeline" --remote "$target" --json >"$work/pull-w.json"
  "$bin" --cache-dir "$whole" verify >/dev/null
  printf 'the remote read back whole into an empty cache: %s artifacts, %s failed, verify clean\n' \
    "$(count moved <"$work/pull-w.json")" "$(count failed <"$work/pull-w.json")"
done
