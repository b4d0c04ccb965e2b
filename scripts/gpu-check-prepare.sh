#!/usr/bin/env bash
# Prepares the GPU check (scripts/gpu-check.sh) on a development machine, no
# GPU needed: builds the CUDA foldwise and model bench through
# scripts/cuda-build.sh --bench, strips their debug information (the symbols
# stay, for backtraces), compresses them with xz and writes them with a
# manifest into target/gpu-check/:
#
#     target/gpu-check/foldwise.xz      the CUDA foldwise
#     target/gpu-check/model-bench.xz   the CUDA model bench (benches/model.rs)
#     target/gpu-check/manifest.txt     commit, SHA-256 and size of each
#
# target/ is git-ignored: carry the folder with the checkout by name
# (carry = ["target/gpu-check"]), then run scripts/gpu-check.sh there.
#
#     scripts/gpu-check-prepare.sh              # build, then pack
#     scripts/gpu-check-prepare.sh --no-build   # pack what was built
#
# --no-build packs FOLDWISE_BIN and FOLDWISE_BENCH_BIN when set, else
# $CARGO_TARGET_DIR/release/foldwise and the newest
# $CARGO_TARGET_DIR/release/deps/model-<hash> (CARGO_TARGET_DIR: as
# cuda-build.sh takes it, default target/cuda). A CUDA foldwise measured
# 195 MB, 70 MB stripped of debug information, 11 MB compressed; what a
# device run carries is 64 MiB in all, the working tree included.
#
# Needs: bash, objcopy (binutils), xz (else gzip), sha256sum; for the build
# what scripts/cuda-build.sh needs.
set -euo pipefail

die() {
    echo "error: gpu-check-prepare: $*" >&2
    exit 1
}
say() {
    echo "gpu-check-prepare: $*" >&2
}

build=1
case ${1:-} in
"") ;;
--no-build) build=0 ;;
-h | --help)
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*) die "unknown argument \`$1\` (see --help)" ;;
esac

cd "$(dirname "$0")/.."
root=$PWD
for tool in objcopy sha256sum; do
    command -v "$tool" >/dev/null || die "\`$tool\` not found"
done
if command -v xz >/dev/null; then
    pack=(xz -T0 -6 -c)
    ext=xz
elif command -v gzip >/dev/null; then
    pack=(gzip -9 -c)
    ext=gz
else
    die "neither xz nor gzip found"
fi
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT

target=${CARGO_TARGET_DIR:-target/cuda}
case $target in
/*) ;;
*) target=$root/$target ;;
esac

fw=""
bench=""
if [ "$build" = 1 ]; then
    [ -x scripts/cuda-build.sh ] ||
        die "scripts/cuda-build.sh not found: it builds the \`cuda\` feature and comes from main (merge it first)"
    say "building through scripts/cuda-build.sh --bench ..."
    scripts/cuda-build.sh --bench >"$tmp/build.out" || die "scripts/cuda-build.sh failed (its errors are above)"
    cat "$tmp/build.out" >&2
    # Its last lines: "built:" and one executable a line.
    fw=$(sed -n 's|^ *\(/.*/release/foldwise\)$|\1|p' "$tmp/build.out" | tail -n 1)
    bench=$(sed -n 's|^ *\(/.*/deps/model-[0-9a-f]*\)$|\1|p' "$tmp/build.out" | tail -n 1)
    [ -n "$fw" ] || die "scripts/cuda-build.sh listed no release/foldwise"
    [ -n "$bench" ] || die "scripts/cuda-build.sh listed no deps/model-<hash> (the model bench)"
else
    fw=${FOLDWISE_BIN:-$target/release/foldwise}
    if [ -n "${FOLDWISE_BENCH_BIN:-}" ]; then
        bench=$FOLDWISE_BENCH_BIN
    else
        for f in "$target"/release/deps/model-*; do
            case $f in *.d) continue ;; esac
            if [ -f "$f" ] && [ -x "$f" ] && { [ -z "$bench" ] || [ "$f" -nt "$bench" ]; }; then
                bench=$f
            fi
        done
    fi
fi
if [ ! -f "$fw" ] || [ ! -x "$fw" ]; then
    die "no foldwise executable at ${fw:-(none)}"
fi
if [ ! -f "$bench" ] || [ ! -x "$bench" ]; then
    die "no model bench executable at ${bench:-$target/release/deps/model-<hash>}"
fi

dest=$root/target/gpu-check
mkdir -p -- "$dest"
rm -f -- "$dest"/foldwise "$dest"/foldwise.* "$dest"/model-bench "$dest"/model-bench.* "$dest"/manifest.txt
{
    echo "# scripts/gpu-check-prepare.sh, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), on $(uname -srm)"
    commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | head -n 1) || dirty=""
    echo "commit $commit${dirty:+ (with uncommitted changes)}"
} >"$tmp/manifest.txt"
total=0
for pair in "foldwise:$fw" "model-bench:$bench"; do
    name=${pair%%:*}
    src=${pair#*:}
    objcopy --strip-debug "$src" "$tmp/$name" || die "objcopy --strip-debug $src failed"
    sum=$(sha256sum -- "$tmp/$name" | cut -d' ' -f1)
    size=$(stat -c %s -- "$tmp/$name")
    cuda=no
    if command -v readelf >/dev/null && readelf -d "$tmp/$name" | grep -q 'NEEDED.*\[libcuda\.so'; then
        cuda=yes
    fi
    [ "$cuda" = yes ] || say "warning: $src does not link libcuda: not a \`cuda\` build"
    say "packing $name ($((size / 1000000)) MB stripped) from $src ..."
    "${pack[@]}" -- "$tmp/$name" >"$dest/$name.$ext" || die "compressing $name failed"
    packed=$(stat -c %s -- "$dest/$name.$ext")
    total=$((total + packed))
    {
        echo "sha256 $sum $name"
        echo "size $size $name ($name.$ext: $packed), cuda: $cuda, from $src"
    } >>"$tmp/manifest.txt"
done
cp -- "$tmp/manifest.txt" "$dest/manifest.txt"
say "target/gpu-check: $((total / 1000000)) MB in all"
[ "$total" -lt $((56 << 20)) ] ||
    say "warning: more than 56 MiB: with the working tree this may not fit the 64 MiB a device run carries"
cat "$dest/manifest.txt"
echo "carry: target/gpu-check; there: scripts/gpu-check.sh"
