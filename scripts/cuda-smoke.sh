#!/usr/bin/env bash
# What a CUDA build of foldwise does on a machine without a GPU, checked
# with the libcuda stub of scripts/cuda-build.sh (every driver call answers
# CUDA_ERROR_STUB_LIBRARY, as on a machine whose driver sees no GPU):
#
#   1. `run --device cuda` fails the model node with `foldwise::node::device`,
#      saying the GPU cannot be used (and keeps the nodes before it);
#   2. `run --device auto` trains and predicts on the CPU, and train.json
#      records `"device": "cpu"`.
#
#     scripts/cuda-smoke.sh [BINARY]     # default: target/cuda/release/foldwise
#
# Run by .ci/run after scripts/cuda-build.sh. Never put the stub on the
# library path where a GPU is meant to be used.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "error: cuda-smoke: $*" >&2
    exit 1
}

bin=${1:-${CARGO_TARGET_DIR:-target/cuda}/release/foldwise}
[ -x "$bin" ] || fail "no CUDA build at $bin (run scripts/cuda-build.sh first)"
bin=$(realpath "$bin")
eval "$(scripts/cuda-build.sh --env)"
export LD_LIBRARY_PATH="$CUDA_HOME/lib:$CUDA_HOME/lib/stubs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/p.toml" <<'EOF'
[pipeline]
name = "cuda-smoke"
seed = 7

[nodes.plates]
kind = "synthetic"
count = 40
max_digits = 5

[nodes.folds]
kind = "split"
data = "plates"
method = "holdout"
ratio = 0.5

[nodes.cnn]
kind = "train"
data = "plates"
split = "folds"
model = { arch = "svhn-small", height = 32, width = 64 }
epochs = 1
batch = 8

[nodes.pred]
kind = "predict"
models = "cnn"
data = "plates"
EOF

run() {
    "$bin" --no-color --cache-dir "$dir/cache" run "$dir/p.toml" -q "$@"
}

set +e
out=$(run --device cuda 2>&1)
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "--device cuda without a GPU exited $rc, not 1:
$out"
for want in "foldwise::node::device" "device \`cuda\` asked for, but it cannot be used" \
    "no CUDA GPU 0 is visible" "--device cpu"; do
    grep -qF -- "$want" <<<"$out" || fail "--device cuda without a GPU: no \"$want\" in:
$out"
done
echo "cuda-smoke: --device cuda without a GPU fails as it should: $(grep -m1 -F 'cannot be used' <<<"$out" | sed 's/^[^a-z]*//')"

run --device auto >"$dir/auto.log" 2>&1 || fail "--device auto without a GPU failed:
$(cat "$dir/auto.log")"
summary=$(find "$dir/cache/objects" -name train.json -path '*/out/*' | head -n 1)
[ -n "$summary" ] || fail "--device auto: no train.json in the cache"
grep -q '"device": "cpu"' "$summary" || fail "--device auto: $summary does not record the CPU:
$(cat "$summary")"
echo "cuda-smoke: --device auto without a GPU trained and predicted on the CPU"
