#!/usr/bin/env bash
# The prepared GPU check: foldwise's CUDA build on a GPU machine that has the
# NVIDIA driver, CUDA 13 libraries and PyTorch in Python, but no Rust
# toolchain and no network. See docs/benchmarks.md, "On a GPU".
#
#     scripts/gpu-check.sh       # from anywhere; it works in the checkout
#
# Before: scripts/gpu-check-prepare.sh on a development machine puts the
# CUDA binaries into target/gpu-check/ (xz-compressed, with a manifest);
# that folder is carried with the checkout (carry = ["target/gpu-check"]).
#
# Checks, each with a time limit, one failing never stopping the others:
#   a. nvidia-smi: GPU name, driver, memory, compute capability;
#      the CUDA libraries the binaries need load (LD_LIBRARY_PATH: PyTorch's
#      site-packages/nvidia/*/lib);
#   b. the quickstart on the GPU (pipelines/quickstart.toml, a fresh cache):
#      its evaluated seq_acc;
#   c. the model bench on the GPU against PyTorch on the same GPU, batches
#      128 and 256: train goal >= 0.8x PyTorch, inference >= 1.0x;
#   d. pipelines/mnist-seq.toml resnet_eval on the GPU when the data is
#      there (FOLDWISE_MNIST_SEQ, ../shared/data/mnist-seq beside the
#      checkout, or shared/data/mnist-seq inside it): val seq_acc goal
#      >= 76.5%, the 20 epochs in < 60 s.
# Then one summary table (markdown) on stdout and in $OUT/summary.md.
#
# Environment:
#   OUT                          where results and logs go (default:
#                                gpu-check-out/ in the checkout)
#   FOLDWISE_BIN                 the CUDA foldwise [target/gpu-check/foldwise
#                                (.xz), else target/cuda/release/foldwise]
#   FOLDWISE_BENCH_BIN           the CUDA model bench [target/gpu-check/
#                                model-bench(.xz), else the newest
#                                target/cuda/release/deps/model-<hash>]
#   FOLDWISE_TORCH_PYTHON        the Python with PyTorch [python3]
#   FOLDWISE_GPU_CHECK_DEVICE    cuda | cuda:N | cpu [cuda]; cpu is a dry run
#                                of the same flow on CPU binaries (no GPU
#                                figures), with tiny settings
#   FOLDWISE_GPU_CHECK_TINY      1: tiny settings (default with cpu only)
#   FOLDWISE_GPU_CHECK_BUDGET    seconds for checks b-d [390]; a check gets
#                                its own limit or what is left, whichever is
#                                less, and is skipped with under 20 s left
#                                (with nvidia-smi and a stopped check's 15 s
#                                of grace, all of it ends within 8 minutes)
#   FOLDWISE_GPU_CHECK_LIMITS    "QUICKSTART BENCH MNIST" limits [120 150 150]
#   FOLDWISE_GPU_CHECK_THREADS   threads of the bench's processes [4]
#
# Exit status: 0 when every check ran (goals met or not: the table says), 1
# when one failed, 2 on a usage error.
set -uo pipefail # not -e: a failing check is recorded, and the next runs

usage() {
    sed -n '2,48p' "$0" | sed 's/^# \{0,1\}//'
}
case ${1:-} in
-h | --help)
    usage
    exit 0
    ;;
"") ;;
*)
    echo "error: gpu-check: no arguments expected (see --help)" >&2
    exit 2
    ;;
esac

# Paths given relative to where the script was started from.
abs() {
    case $1 in
    /* | "") echo "$1" ;;
    *) echo "$PWD/$1" ;;
    esac
}
out=$(abs "${OUT:-}")
FOLDWISE_BIN=$(abs "${FOLDWISE_BIN:-}")
FOLDWISE_BENCH_BIN=$(abs "${FOLDWISE_BENCH_BIN:-}")
FOLDWISE_MNIST_SEQ=$(abs "${FOLDWISE_MNIST_SEQ:-}")
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
out=${out:-$root/gpu-check-out}
mkdir -p -- "$out" || exit 2
out=$(cd "$out" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX") || exit 2
trap 'rm -rf -- "$tmp"' EXIT
# What an earlier check left in $out must not pass for this one's.
(cd "$out" && rm -f -- gpu-check.log checks.tsv summary.md environment.txt manifest.txt \
    nvidia-smi.txt gpu.csv libraries.txt quickstart.log quickstart-history.json \
    quickstart-eval-report.txt bench.log bench.jsonl mnist.log mnist-history.json \
    mnist-resnet-timings.json)
# Everything printed also goes to the log.
exec > >(tee -a "$out/gpu-check.log") 2>&1

device=${FOLDWISE_GPU_CHECK_DEVICE:-cuda}
case $device in
cpu) tiny=${FOLDWISE_GPU_CHECK_TINY:-1} ;;
cuda | cuda:[0-9] | cuda:[0-9][0-9]) tiny=${FOLDWISE_GPU_CHECK_TINY:-0} ;;
*)
    echo "error: gpu-check: FOLDWISE_GPU_CHECK_DEVICE=$device: expected cuda, cuda:N or cpu" >&2
    exit 2
    ;;
esac
gpu_index=0
case $device in cuda:*) gpu_index=${device#cuda:} ;; esac
budget=${FOLDWISE_GPU_CHECK_BUDGET:-390}
read -r limit_quickstart limit_bench limit_mnist <<<"${FOLDWISE_GPU_CHECK_LIMITS:-120 150 150}"
bench_threads=${FOLDWISE_GPU_CHECK_THREADS:-4}
for n in "$budget" "$limit_quickstart" "$limit_bench" "$limit_mnist" "$bench_threads"; do
    case $n in
    '' | *[!0-9]*)
        echo "error: gpu-check: \`$n\` is not a whole number of seconds or threads" >&2
        exit 2
        ;;
    esac
done
py=${FOLDWISE_TORCH_PYTHON:-python3}
export FOLDWISE_TORCH_PYTHON=$py
export FOLDWISE_TORCH_SCRIPT=$root/benches/torch_models.py
export NO_COLOR=1

# One line per check: name, rc (or ok/skipped), seconds, note; the
# summary reads it with the files each check leaves in $out.
checks=$out/checks.tsv
: >"$checks"
record() {
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$checks"
}
say() {
    echo "gpu-check: $*"
}
now() {
    date +%s.%N
}
since() {
    awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'
}
start=$(now)
# The limit of the next check: its own, or what is left of the budget; 0
# when under 20 s are left.
limit_of() {
    local own=$1 left
    left=$(awk -v a="$start" -v b="$(now)" -v t="$budget" 'BEGIN { printf "%d", t - (b - a) }')
    if [ "$left" -lt 20 ]; then
        echo 0
    elif [ "$left" -lt "$own" ]; then
        echo "$left"
    else
        echo "$own"
    fi
}
# Runs "$@" for at most $1 seconds (then SIGTERM to its process group, and
# SIGKILL 15 s later), output into $2; returns its status (124: timed out).
limited() {
    local secs=$1 log=$2
    shift 2
    timeout --kill-after=15 "$secs" "$@" >"$log" 2>&1
}

say "device $device, tiny settings: $tiny, budget ${budget} s, results in $out"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "host: $(uname -srm), $(nproc 2>/dev/null || echo '?') cores"
    echo "checkout: $root ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'))"
    echo "python: $py ($("$py" --version 2>&1))"
    echo "device: $device, tiny: $tiny, budget: $budget s, limits: $limit_quickstart $limit_bench $limit_mnist s"
} >"$out/environment.txt"

# --- the binaries ---------------------------------------------------------------

# The binary NAME: $2 when set, else target/gpu-check/NAME (or NAME.xz,
# NAME.gz, unpacked into $tmp), else $3 (a pattern under target/cuda/release).
find_binary() {
    local name=$1 override=$2 fallback=$3 f
    if [ -n "$override" ]; then
        echo "$override"
        return
    fi
    if [ -f "target/gpu-check/$name" ] && [ -x "target/gpu-check/$name" ]; then
        echo "$root/target/gpu-check/$name"
        return
    elif [ -f "target/gpu-check/$name" ]; then
        # Carried without its executable bit.
        mkdir -p -- "$tmp/bin"
        cp -- "target/gpu-check/$name" "$tmp/bin/$name" && chmod +x "$tmp/bin/$name" &&
            echo "$tmp/bin/$name"
        return
    fi
    for f in "target/gpu-check/$name.xz" "target/gpu-check/$name.gz"; do
        [ -f "$f" ] || continue
        mkdir -p -- "$tmp/bin"
        if ! unpack "$f" "$tmp/bin/$name"; then
            say "cannot unpack $f" >&2
            return
        fi
        chmod +x "$tmp/bin/$name"
        echo "$tmp/bin/$name"
        return
    done
    # The newest executable the pattern names.
    local newest=""
    # shellcheck disable=SC2086 # the fallback is a pattern
    for f in $fallback; do
        if [ -f "$f" ] && [ -x "$f" ] && { [ -z "$newest" ] || [ "$f" -nt "$newest" ]; }; then
            newest=$f
        fi
    done
    if [ -n "$newest" ]; then
        echo "$root/$newest"
    fi
}
unpack() {
    case $1 in
    *.xz)
        if command -v xz >/dev/null; then
            xz -dc -- "$1" >"$2"
        else
            "$py" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
        fi
        ;;
    *.gz)
        if command -v gzip >/dev/null; then
            gzip -dc -- "$1" >"$2"
        else
            "$py" -c 'import gzip, shutil, sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
        fi
        ;;
    esac
}

t0=$(now)
fw=$(find_binary foldwise "${FOLDWISE_BIN:-}" "target/cuda/release/foldwise")
bench=$(find_binary model-bench "${FOLDWISE_BENCH_BIN:-}" "target/cuda/release/deps/model-*")
note=""
binaries=ok
for pair in "foldwise:$fw" "model bench:$bench"; do
    what=${pair%%:*}
    path=${pair#*:}
    if [ -z "$path" ] || [ ! -x "$path" ]; then
        note+="$what not found${path:+ ($path)}; "
        binaries=failed
    else
        echo "$what: $path" >>"$out/environment.txt"
    fi
done
# The manifest of scripts/gpu-check-prepare.sh: the binaries' SHA-256.
if [ -f target/gpu-check/manifest.txt ]; then
    cp target/gpu-check/manifest.txt "$out/manifest.txt"
    if [ "$device" != cpu ] && [ -z "${FOLDWISE_BIN:-}${FOLDWISE_BENCH_BIN:-}" ] &&
        grep -q 'cuda: no' target/gpu-check/manifest.txt; then
        note+="the manifest says they were not built with \`cuda\`; "
        binaries=failed
    fi
    if [ -z "${FOLDWISE_BIN:-}${FOLDWISE_BENCH_BIN:-}" ]; then
        note+="prepared from $(awk '$1 == "commit" { print substr($2, 1, 12), $3, $4, $5, $6 }' target/gpu-check/manifest.txt | sed 's/ *$//'); "
    fi
    if [ -z "${FOLDWISE_BIN:-}${FOLDWISE_BENCH_BIN:-}" ] && command -v sha256sum >/dev/null; then
        for pair in "foldwise:$fw" "model-bench:$bench"; do
            name=${pair%%:*}
            path=${pair#*:}
            want=$(awk -v n="$name" '$1 == "sha256" && $3 == n { print $2 }' target/gpu-check/manifest.txt)
            if [ -z "$want" ] || [ ! -f "$path" ]; then
                continue
            fi
            got=$(sha256sum -- "$path" | cut -d' ' -f1)
            if [ "$got" != "$want" ]; then
                note+="$name differs from the manifest's SHA-256; "
                binaries=failed
            fi
        done
    fi
fi
record binaries "$binaries" "$(since "$t0")" "${note%; }"
say "binaries: $binaries ${note%; }"

# --- a. the GPU and the CUDA libraries ------------------------------------------

t0=$(now)
if [ "$device" = cpu ] && ! command -v nvidia-smi >/dev/null; then
    record nvidia-smi skipped 0 "a CPU dry run without nvidia-smi"
elif ! command -v nvidia-smi >/dev/null; then
    record nvidia-smi 127 0 "nvidia-smi not found"
else
    timeout 30 nvidia-smi >"$out/nvidia-smi.txt" 2>&1
    rc=$?
    # compute_cap needs a recent driver; without it, the rest.
    line=$(timeout 30 nvidia-smi -i "$gpu_index" --format=csv,noheader \
        --query-gpu=name,driver_version,memory.total,compute_cap 2>/dev/null | head -n 1) ||
        line=$(timeout 30 nvidia-smi -i "$gpu_index" --format=csv,noheader \
            --query-gpu=name,driver_version,memory.total 2>/dev/null | head -n 1) || line=""
    [ -n "$line" ] || [ "$rc" != 0 ] || rc=1
    echo "$line" >"$out/gpu.csv"
    record nvidia-smi "$rc" "$(since "$t0")" "$line"
fi
say "GPU: $(cat "$out/gpu.csv" 2>/dev/null || echo none)"

t0=$(now)
if [ "$device" = cpu ]; then
    record libraries skipped 0 "a CPU dry run"
else
    # The CUDA 13 libraries of PyTorch's wheels: site-packages/nvidia/*/lib
    # (cu13/lib for CUDA 13 wheels; cublas/lib, ... for CUDA 12), then
    # torch/lib.
    libdirs=$("$py" - <<'EOF' 2>>"$out/libraries.txt"
import glob, importlib.util, os, site

roots = []
try:
    import nvidia
    roots += list(nvidia.__path__)
except ImportError:
    pass
try:
    sp = site.getsitepackages() + [site.getusersitepackages()]
except AttributeError:  # a virtualenv's old site module
    sp = []
roots += [os.path.join(p, "nvidia") for p in sp]
dirs = []
for r in roots:
    for d in sorted(glob.glob(os.path.join(r, "*", "lib"))):
        d = os.path.realpath(d)
        if d not in dirs:
            dirs.append(d)
spec = importlib.util.find_spec("torch")
if spec and spec.origin:
    d = os.path.join(os.path.dirname(spec.origin), "lib")
    if os.path.isdir(d):
        dirs.append(d)
print(":".join(dirs))
EOF
    )
    if [ -n "$libdirs" ]; then
        export LD_LIBRARY_PATH=$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
    {
        echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
        for b in "$fw" "$bench"; do
            if [ -z "$b" ] || [ ! -f "$b" ]; then
                continue
            fi
            echo "ldd $b:"
            ldd "$b" 2>&1
        done
    } >>"$out/libraries.txt"
    missing=$(grep 'not found' "$out/libraries.txt" | awk '{ print $1 }' | sort -u | tr '\n' ' ')
    # What is loaded at run time (dlopen) as well as linked: each must load.
    unloadable=$("$py" - libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 \
        libcurand.so.10 libnvrtc.so.13 <<'EOF' 2>>"$out/libraries.txt"
import ctypes, sys
bad = []
for name in sys.argv[1:]:
    try:
        ctypes.CDLL(name)
    except OSError as e:
        print(f"{name}: {e}", file=sys.stderr)
        bad.append(name)
print(" ".join(bad))
EOF
    )
    missing=$(echo "$missing $unloadable" | tr ' ' '\n' | grep . | sort -u | tr '\n' ' ')
    if [ -z "$missing" ]; then
        record libraries ok "$(since "$t0")" "all load (LD_LIBRARY_PATH: ${libdirs:-unchanged})"
    else
        hint="not found: ${missing% }"
        case $missing in *libcuda.so.1*) hint+="; libcuda.so.1 is the NVIDIA driver's" ;; esac
        case $missing in *lib[cn]*.so.1[03]*) hint+="; the others come with PyTorch for CUDA 13 (site-packages/nvidia/cu13/lib) or a CUDA 13 toolkit" ;; esac
        record libraries failed "$(since "$t0")" "$hint"
    fi
fi
say "libraries: $(tail -n 1 "$checks" | cut -f2,4)"
if [ -n "$fw" ] && [ -x "$fw" ]; then
    "$fw" --version >>"$out/environment.txt" 2>&1
fi

# A copy of pipeline $1 at $2 with each OLD in the rest replaced by NEW
# (OLD NEW pairs); each OLD must occur.
rewrite() {
    "$py" - "$@" <<'EOF'
import sys
src, dst, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(src).read()
for old, new in zip(pairs[::2], pairs[1::2]):
    if old not in text:
        sys.exit(f"{src}: `{old}` not found (the pipeline changed; update scripts/gpu-check.sh)")
    text = text.replace(old, new)
open(dst, "w").write(text)
EOF
}

# --- b. the quickstart -------------------------------------------------------------

qs=pipelines/quickstart.toml
if [ "$tiny" = 1 ]; then
    # Fewer plates and epochs (two cycles: `pred` takes two snapshots):
    # the flow, not the figures.
    rewrite "$qs" "$tmp/quickstart.toml" "count = 3000" "count = 300" "count = 1000" "count = 100" \
        "cycle_epochs = 3, cycles = 5" "cycle_epochs = 1, cycles = 2" >>"$out/quickstart.log" 2>&1 &&
        qs=$tmp/quickstart.toml
fi
limit=$(limit_of "$limit_quickstart")
if [ -z "$fw" ] || [ ! -x "$fw" ]; then
    record quickstart skipped 0 "no foldwise binary"
elif [ "$limit" = 0 ]; then
    record quickstart skipped 0 "no time left in the budget"
else
    say "quickstart on $device (at most $limit s) ..."
    t0=$(now)
    limited "$limit" "$out/quickstart.log" \
        "$fw" --cache-dir "$tmp/cache-quickstart" --no-remote --no-color run "$qs" --device "$device"
    rc=$?
    secs=$(since "$t0")
    "$fw" --cache-dir "$tmp/cache-quickstart" --no-color log --json >"$out/quickstart-history.json" 2>>"$out/quickstart.log"
    report=$("$fw" --cache-dir "$tmp/cache-quickstart" --no-color path "$qs" eval 2>/dev/null)
    [ -f "$report/report.txt" ] && cp -- "$report/report.txt" "$out/quickstart-eval-report.txt"
    record quickstart "$rc" "$secs" "limit $limit s"
fi
say "quickstart: $(tail -n 1 "$checks" | cut -f2,3)"

# --- c. the model bench --------------------------------------------------------------

if [ "$tiny" = 1 ]; then
    bench_args=(--batches 4 --steps 1 --seconds 0)
else
    bench_args=(--batches "128,256")
fi
limit=$(limit_of "$limit_bench")
if [ -z "$bench" ] || [ ! -x "$bench" ]; then
    record bench skipped 0 "no model bench binary"
elif [ "$limit" = 0 ]; then
    record bench skipped 0 "no time left in the budget"
else
    say "model bench on $device against PyTorch (at most $limit s) ..."
    t0=$(now)
    limited "$limit" "$out/bench.log" "$bench" --device "$device" --models svhn-small,resnet-mini \
        --threads "$bench_threads" --json "$out/bench.jsonl" "${bench_args[@]}"
    rc=$?
    record bench "$rc" "$(since "$t0")" "limit $limit s"
fi
say "bench: $(tail -n 1 "$checks" | cut -f2,3)"

# --- d. resnet_eval on mnist-seq ---------------------------------------------------

data=""
for d in ${FOLDWISE_MNIST_SEQ:+"$FOLDWISE_MNIST_SEQ"} "$root/../shared/data/mnist-seq" "$root/shared/data/mnist-seq"; do
    if [ -d "$d/train" ] && [ -f "$d/train.json" ] && [ -d "$d/val" ] && [ -f "$d/val.json" ]; then
        data=$(cd "$d" && pwd)
        break
    fi
done
limit=$(limit_of "$limit_mnist")
if [ -z "$data" ]; then
    record mnist skipped 0 "no data: ../shared/data/mnist-seq and shared/data/mnist-seq are absent"
elif [ -z "$fw" ] || [ ! -x "$fw" ]; then
    record mnist skipped 0 "no foldwise binary"
elif [ "$limit" = 0 ]; then
    record mnist skipped 0 "no time left in the budget"
else
    # The pipeline reads ../../shared/data/mnist-seq relative to itself: a
    # copy reads the data found, wherever it is.
    pairs=("\"../../shared/data/mnist-seq/" "\"$data/")
    # Tiny: one epoch of the small CNN instead of 20 of resnet-mini.
    [ "$tiny" = 1 ] && pairs+=("epochs = 20" "epochs = 1" 'arch = "resnet-mini"' 'arch = "svhn-small"')
    if ! rewrite pipelines/mnist-seq.toml "$tmp/mnist-seq.toml" "${pairs[@]}" >"$out/mnist.log" 2>&1; then
        record mnist failed 0 "$(tail -n 1 "$out/mnist.log")"
    else
        say "mnist-seq resnet_eval on $device, data $data (at most $limit s) ..."
        t0=$(now)
        limited "$limit" "$out/mnist.log" \
            "$fw" --cache-dir "$tmp/cache-mnist" --no-remote --no-color run "$tmp/mnist-seq.toml" resnet_eval --device "$device"
        rc=$?
        secs=$(since "$t0")
        "$fw" --cache-dir "$tmp/cache-mnist" --no-color log --json >"$out/mnist-history.json" 2>>"$out/mnist.log"
        # The epochs' own times (the working folder of the one train node).
        find "$tmp/cache-mnist/work" -name timings.json -exec cp -- {} "$out/mnist-resnet-timings.json" \; 2>/dev/null
        record mnist "$rc" "$secs" "limit $limit s; data $data"
    fi
fi
say "mnist: $(tail -n 1 "$checks" | cut -f2,3,4)"

# --- the summary ---------------------------------------------------------------------

"$py" - "$out" "$device" "$tiny" "$(since "$start")" <<'EOF' >"$out/summary.md"
import json, os, sys

out, device, tiny, total = sys.argv[1], sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])
TRAIN_GOAL, INFER_GOAL = 0.8, 1.0
ACC_GOAL, EPOCHS_GOAL = 76.5, 60.0


def read(name, parse=json.loads):
    try:
        with open(os.path.join(out, name)) as f:
            return parse(f.read())
    except (OSError, ValueError):
        return None


checks = {}
for line in (read("checks.tsv", str) or "").splitlines():
    name, rc, secs, note = (line.split("\t") + [""] * 4)[:4]
    checks[name] = (rc, float(secs or 0), note)


def status(name):
    """ok / failed (why) / skipped (why), the seconds and the note."""
    rc, secs, note = checks.get(name, ("skipped", 0.0, "not run"))
    if rc in ("ok", "0"):
        return "ok", secs, note
    if rc == "skipped":
        return "skipped", secs, note
    if rc in ("124", "137"):
        return "failed (timed out)", secs, note
    if rc == "failed":
        return "failed", secs, note
    if rc == "127":
        return "failed (exit 127: did not start)", secs, note
    return f"failed (exit {rc})", secs, note


def last_line(log):
    """The last error line of a log (else its last line), for a failed check."""
    text = read(log, str) or ""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    errors = [l for l in lines if l.lower().startswith("error") or "panicked" in l]
    line = (errors or lines or ["(empty log)"])[-1]
    return (line[:160] + "…" if len(line) > 160 else line) + f" ({log})"


def last_run(name):
    runs = read(name)
    return runs[-1] if isinstance(runs, list) and runs else None


def score(run, instance, metric="seq_acc"):
    for m in (run or {}).get("metrics", []):
        if m.get("instance") == instance:
            for s in m.get("scores", []):
                if s.get("name") == metric:
                    return s.get("value")
    return None


def devices(run, kind="train"):
    return sorted({n.get("device") for n in (run or {}).get("nodes", [])
                   if n.get("kind") == kind and n.get("device")})


def pct(v):
    return "–" if v is None else f"{100 * v:.2f}%"


def secs(v):
    return "–" if v is None else f"{v:.1f} s"


def met(ok):
    return "–" if ok is None else ("yes" if ok else "**no**")


rows = []  # item, result, time, value, goal, met


def add(item, result="", time="", value="", goal="", ok=None):
    rows.append((item, result, time, value, goal, met(ok) if goal else ""))


gpu = read("gpu.csv", str)
gpu = gpu.strip() if gpu else ""
st, t, note = status("nvidia-smi")
add("GPU (nvidia-smi)", st, secs(t), gpu or note or "–")
for name, label in (("binaries", "binaries"), ("libraries", "CUDA libraries")):
    st, t, note = status(name)
    add(label, st, secs(t) if t else "", note or "–")

st, t, note = status("quickstart")
run = last_run("quickstart-history.json")
acc = score(run, "eval")
if st == "ok" and acc is None:
    st = "failed (no eval seq_acc)"
dev = ", ".join(devices(run)) or "–"
if st.startswith("failed"):
    add("quickstart (eval seq_acc)", st, secs(t), f"{pct(acc)}; {last_line('quickstart.log')}")
else:
    add("quickstart (eval seq_acc)", st, secs(t), f"{pct(acc)}; trained on {dev}")

st, t, note = status("bench")
bench = []
for line in (read("bench.jsonl", str) or "").splitlines():
    try:
        bench.append(json.loads(line))
    except ValueError:
        pass
torch_v = next((b["torch"].get("torch") for b in bench if b.get("torch")), None)
gpu_name = next((b["torch"].get("gpu") for b in bench if b.get("torch") and b["torch"].get("gpu")), None)
desc = f"{len(bench)} configuration(s)"
if torch_v:
    desc += f"; PyTorch {torch_v}" + (f" on {gpu_name}" if gpu_name else "")
elif bench:
    desc += "; PyTorch: " + (bench[0].get("torch_error") or "no figures")
if st.startswith("failed"):
    desc += "; " + last_line("bench.log")
add("model bench", st, secs(t), desc)
for b in bench:
    ours, theirs = b.get("foldwise"), b.get("torch")
    for phase, goal in (("train", TRAIN_GOAL), ("infer", INFER_GOAL)):
        item = f"bench `{b['model']}` batch {b['batch']} {phase}"
        if not ours:
            add(item, "failed", "", b.get("foldwise_error") or "–", f"≥ {goal}x", None)
            continue
        f = ours.get(f"{phase}_ips")
        if theirs:
            p = theirs.get(f"{phase}_ips")
            r = f / p
            mem = ""
            if phase == "train" and theirs.get("peak_gpu_mib") is not None:
                mem = f"; PyTorch peak GPU memory {theirs['peak_gpu_mib']:.0f} MiB, foldwise's not measured"
            add(item, "ok", "", f"foldwise {f:.0f} / PyTorch {p:.0f} images/s = {r:.2f}x{mem}",
                f"≥ {goal}x", r >= goal)
        else:
            add(item, "ok", "", f"foldwise {f:.0f} images/s; no PyTorch figure", f"≥ {goal}x", None)

st, t, note = status("mnist")
run = last_run("mnist-history.json")
acc = score(run, "resnet_eval")
if st == "ok" and acc is None:
    st = "failed (no resnet_eval seq_acc)"
node = next((n for n in (run or {}).get("nodes", []) if n.get("instance") == "resnet"), None)
timings = read("mnist-resnet-timings.json")
epochs = (timings or {}).get("epochs") or []
epoch_secs = sum(e.get("seconds", 0) for e in epochs) if epochs else None
dev = ", ".join(devices(run)) or "–"
if st == "skipped":
    value = note
elif st.startswith("failed"):
    value = f"{pct(acc)}; {last_line('mnist.log')}"
else:
    value = f"{pct(acc)}; trained on {dev}"
add("mnist-seq resnet_eval (val seq_acc)", st, secs(t), value,
    f"≥ {ACC_GOAL}%" if st != "skipped" else "", None if acc is None else 100 * acc >= ACC_GOAL)
if st != "skipped":
    node_s = node.get("seconds") if node else None
    n = len(epochs) or "?"
    add(f"mnist-seq resnet: training time ({n} epoch{'' if n == 1 else 's'})", "", "",
        f"{secs(epoch_secs)} (the train node: {secs(node_s)})", f"< {EPOCHS_GOAL:.0f} s",
        None if epoch_secs is None else epoch_secs < EPOCHS_GOAL)

print("## foldwise GPU check")
print()
if device == "cpu":
    print("**A dry run on the CPU** (FOLDWISE_GPU_CHECK_DEVICE=cpu): the flow, not GPU figures; goals are the GPU's.")
if tiny:
    print("**Tiny settings** (fewer plates, epochs and steps, batch 4): the figures mean nothing.")
print(f"Device `{device}`; all checks {total:.0f} s.")
print()
print("| item | result | time | value | goal | met |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(str(c).replace("|", "/") for c in r) + " |")
print()
print("Files: " + ", ".join(sorted(f for f in os.listdir(out) if f != "summary.md")) + ", summary.md")
EOF
if [ -s "$out/summary.md" ]; then
    echo
    cat "$out/summary.md"
else
    say "the summary failed (see above); the raw check results:"
    cat "$checks"
fi

failed=$(awk -F '\t' '$2 != "ok" && $2 != "0" && $2 != "skipped"' "$checks" | cut -f1 | tr '\n' ' ')
if [ -n "$failed" ]; then
    say "failed: $failed"
    exit 1
fi
say "every check ran"
