# shellcheck shell=bash
# Sourced by .ci/run (bash, set -euo pipefail), after .ci/seaweedfs.sh: starts
# a single-host Slurm cluster (munged, slurmctld, slurmd -N localhost) on
# 127.0.0.1 for the Slurm executor's integration tests and, once a trivial job
# has run on it, exports FOLDWISE_TEST_SLURM=1 and SLURM_CONF (the clients
# sbatch, squeue, scancel, srun find the cluster through it). Debian's
# slurmctld, slurmd, slurm-client and munge are installed when sbatch is
# missing. The configuration is .ci/slurm/slurm.conf.in filled in for this
# machine; everything the daemons write (state, spool, logs, pid files, the
# munge key and socket) lives in one temporary directory. An EXIT (and
# INT/TERM) trap, chained before whatever trap was already set (SeaweedFS's),
# cancels every job, stops slurmd and what it started (slurmstepd, job
# tasks), slurmctld and munged by pid, and removes that directory. Any
# failure prints one note, stops what was started, exports nothing and lets
# CI go on: those tests then say they were skipped. Needs root (SlurmUser=root,
# and munged runs as the munge user).

_sl_ctl_port=16817 # SlurmctldPort; not Slurm's default 6817, kept free here
_sl_d_port=16818   # SlurmdPort
_sl_template=$(dirname -- "${BASH_SOURCE[0]}")/slurm/slurm.conf.in
_sl_dir=""
_sl_conf=""
_sl_munged=""
_sl_ctld=""
_sl_slurmd=""
_sl_why=""

# Fields of /proc/$1/stat after the command name, into array _sl_f (0:
# state, 1: parent, 2: process group, 3: session).
_sl_f=()
_sl_stat() {
    local st
    read -r st 2>/dev/null <"/proc/$1/stat" || return 1
    read -r -a _sl_f <<<"${st##*) }"
}

# Whether process $1 exists and is not a zombie.
_sl_alive() {
    kill -0 "$1" 2>/dev/null || return 1
    _sl_stat "$1" || return 0
    [ "${_sl_f[0]}" != Z ]
}

# Whether process $1 leads its own process group, and that is not this shell's.
_sl_leads() {
    local own
    _sl_stat $$ || return 1
    own=${_sl_f[2]}
    _sl_stat "$1" && [ "${_sl_f[2]}" = "$1" ] && [ "$own" != "$1" ]
}

# Stops process $1: SIGTERM (to its group when it leads one), up to $2 tenths
# of a second, then SIGKILL to what is left.
_sl_kill() {
    local pid=$1 tenths=$2 target=$1 i
    if _sl_leads "$pid"; then target=-$pid; fi
    kill -TERM -- "$target" 2>/dev/null || true
    for ((i = 0; i < tenths; i++)); do
        _sl_alive "$pid" || break
        sleep 0.1
    done
    if _sl_alive "$pid" || [ "$target" != "$pid" ]; then
        kill -KILL -- "$target" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Pids of this cluster's slurmstepd processes (slurmd hands them
# SLURM_CONF=$1; each leads its own session) and of all their descendants,
# the tasks of jobs (needs /proc).
_sl_steps() {
    local conf=$1 p comm c
    local -a roots=() queue=()
    local -A kids=()
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        _sl_stat "$p" 2>/dev/null || continue
        kids[${_sl_f[1]}]+=" $p"
        read -r comm 2>/dev/null <"/proc/$p/comm" || continue
        if [ "$comm" = slurmstepd ] && grep -qzFx "SLURM_CONF=$conf" "/proc/$p/environ" 2>/dev/null; then
            roots+=("$p")
        fi
    done
    queue=("${roots[@]}")
    while [ ${#queue[@]} -gt 0 ]; do
        p=${queue[0]}
        queue=("${queue[@]:1}")
        echo "$p"
        for c in ${kids[$p]:-}; do queue+=("$c"); done
    done
}

# Cancels every job, stops slurmd, then whatever of its jobs is left
# (slurmstepd and the tasks), slurmctld and munged, and removes the directory.
# Safe to call more than once.
_sl_stop() {
    local dir=$_sl_dir conf=$_sl_conf munged=$_sl_munged ctld=$_sl_ctld slurmd=$_sl_slurmd
    local i ids left p
    _sl_dir=""
    _sl_conf=""
    _sl_munged=""
    _sl_ctld=""
    _sl_slurmd=""
    if [ -n "$slurmd" ] && _sl_alive "$munged" && _sl_alive "$ctld" && _sl_alive "$slurmd"; then
        # Jobs end through Slurm first (SIGTERM, KillWait=5 s, SIGKILL).
        ids=$(SLURM_CONF=$conf timeout 10 squeue -h -o %A 2>/dev/null) || ids=""
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086
            SLURM_CONF=$conf timeout 10 scancel $ids >/dev/null 2>&1 || true
            for ((i = 0; i < 40; i++)); do
                left=$(SLURM_CONF=$conf timeout 5 squeue -h -t R,CG,S,ST,SO -o %A 2>/dev/null) || left=""
                [ -z "$left" ] && break
                sleep 0.2
            done
        fi
    fi
    if [ -n "$slurmd" ]; then _sl_kill "$slurmd" 50; fi
    # slurmstepd outlives slurmd; what scancel did not end ends here.
    if [ -n "$conf" ]; then
        left=$(_sl_steps "$conf")
        if [ -n "$left" ]; then
            # shellcheck disable=SC2086
            kill -TERM $left 2>/dev/null || true
            for ((i = 0; i < 20; i++)); do
                for p in $left; do _sl_alive "$p" && break; p=""; done
                [ -z "$p" ] && break
                sleep 0.1
            done
            # shellcheck disable=SC2086
            kill -KILL $left 2>/dev/null || true
        fi
    fi
    if [ -n "$ctld" ]; then _sl_kill "$ctld" 100; fi
    if [ -n "$munged" ]; then _sl_kill "$munged" 50; fi
    if [ -n "$dir" ]; then rm -rf -- "$dir"; fi
}

# The command of the trap now set for signal $1, empty when none.
_sl_trap_of() {
    local t
    t=$(trap -p "$1")
    [ -n "$t" ] || return 0
    eval "set -- $t" # trap -- 'COMMAND' SIGNAL
    printf '%s' "$3"
}

# Chain before what is already set (.ci/seaweedfs.sh's traps), unless this
# file was sourced before.
_sl_prev_exit=$(_sl_trap_of EXIT)
_sl_prev_int=$(_sl_trap_of INT)
_sl_prev_term=$(_sl_trap_of TERM)
if [[ $_sl_prev_exit == *_sl_on_exit* ]]; then _sl_prev_exit=""; fi
if [[ $_sl_prev_int == *_sl_on_signal* ]]; then _sl_prev_int=""; fi
if [[ $_sl_prev_term == *_sl_on_signal* ]]; then _sl_prev_term=""; fi

_sl_on_exit() {
    _sl_stop
    if [ -n "$_sl_prev_exit" ]; then eval "$_sl_prev_exit"; fi
}

# Stops Slurm, runs the trap that was there before (SeaweedFS's stops its
# server and ends the shell with the signal), else ends the shell with it.
_sl_on_signal() {
    local prev
    _sl_stop
    if [ "$1" = INT ]; then prev=$_sl_prev_int; else prev=$_sl_prev_term; fi
    if [ -n "$prev" ]; then eval "$prev"; fi
    trap - "$1"
    kill -s "$1" $$
}

trap _sl_on_exit EXIT
trap '_sl_on_signal INT' INT
trap '_sl_on_signal TERM' TERM

# shellcheck source=.ci/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

# Whether something accepts TCP connections on 127.0.0.1:$1.
_sl_port_used() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Starts "$@" in the background in its own session, output to log $1 (the rest
# is the command); sets _sl_bg to its pid.
_sl_bg=""
_sl_spawn() {
    local log=$1
    shift
    local -a cmd=("$@")
    if [[ $- != *m* ]]; then cmd=(setsid "${cmd[@]}"); fi
    (cd -- "$_sl_dir" && exec "${cmd[@]}") </dev/null >"$log" 2>&1 &
    _sl_bg=$!
    # Out of the job table: a bare `wait` or `kill %1` later must not reach it.
    disown "$_sl_bg" 2>/dev/null || true
}

_sl_start() {
    local sudo="" p mem cpus state out deadline started installed=""
    for p in timeout setsid setpriv sed awk; do
        command -v "$p" >/dev/null || { _sl_why="$p is not installed"; return 1; }
    done
    [ -f "$_sl_template" ] || { _sl_why="$_sl_template is missing"; return 1; }
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    _sl_dir=$(mktemp -d "${TMPDIR:-/tmp}/foldwise-slurm.XXXXXX") ||
        { _sl_why="mktemp -d failed"; _sl_dir=""; return 1; }
    if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null ||
        ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
        command -v apt-get >/dev/null || { _sl_why="Slurm is not installed and there is no apt-get"; return 1; }
        if [ -n "$sudo" ]; then
            command -v sudo >/dev/null || { _sl_why="Slurm is not installed and there is no sudo"; return 1; }
        fi
        p=$_sl_dir/install.log
        started=$SECONDS
        if ! { $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq &&
            DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
                slurmctld slurmd slurm-client munge; } >"$p" 2>&1; then
            _sl_why="apt-get install slurmctld slurmd slurm-client munge failed: $(ci_last_line "$p")"
            return 1
        fi
        installed=" (installed in $((SECONDS - started)) s)"
        for p in sbatch slurmctld slurmd munged; do
            command -v "$p" >/dev/null || { _sl_why="$p is missing after apt-get install"; return 1; }
        done
    fi
    # SlurmUser=root; slurmd runs jobs as their submitter.
    [ -z "$sudo" ] || { _sl_why="the daemons need root (SlurmUser=root)"; return 1; }
    id munge >/dev/null 2>&1 || { _sl_why="there is no munge user (package munge makes it)"; return 1; }
    for p in $_sl_ctl_port $_sl_d_port; do
        if _sl_port_used "$p"; then _sl_why="127.0.0.1:$p is already in use"; return 1; fi
    done

    cpus=$(nproc 2>/dev/null) || cpus=""
    mem=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo 2>/dev/null) || mem=""
    [[ $cpus =~ ^[1-9][0-9]*$ && $mem =~ ^[1-9][0-9]*$ ]] ||
        { _sl_why="could not read nproc or MemTotal"; return 1; }
    # slurmd drains a node configured with more memory than it finds.
    mem=$((mem * 9 / 10))

    # munged (as munge) must reach its directory, which must be world-searchable;
    # the key is this run's own, owned by munge, mode 0400.
    if ! { chmod 0711 "$_sl_dir" &&
        mkdir -p -- "$_sl_dir/state" "$_sl_dir/spool" "$_sl_dir/munge" &&
        chmod 0755 "$_sl_dir/munge" &&
        head -c 1024 /dev/urandom >"$_sl_dir/munge/munge.key" &&
        chown -R munge:munge "$_sl_dir/munge" &&
        chmod 0400 "$_sl_dir/munge/munge.key"; }; then
        _sl_why="could not lay out $_sl_dir"
        return 1
    fi
    _sl_conf=$_sl_dir/slurm.conf
    sed -e "s|@DIR@|$_sl_dir|g" -e "s|@CPUS@|$cpus|g" -e "s|@MEM@|$mem|g" \
        -e "s|@MEMCPU@|$((mem / cpus))|g" -e "s|@CTLPORT@|$_sl_ctl_port|g" \
        -e "s|@DPORT@|$_sl_d_port|g" "$_sl_template" >"$_sl_conf" ||
        { _sl_why="could not write $_sl_conf"; return 1; }

    started=$SECONDS
    _sl_spawn "$_sl_dir/munged.out" setpriv --reuid=munge --regid=munge --init-groups -- \
        munged -F --key-file="$_sl_dir/munge/munge.key" --socket="$_sl_dir/munge/munge.socket" \
        --pid-file="$_sl_dir/munge/munged.pid" --seed-file="$_sl_dir/munge/munged.seed" \
        --log-file="$_sl_dir/munge/munged.log"
    _sl_munged=$_sl_bg
    deadline=$((SECONDS + 10))
    until [ -S "$_sl_dir/munge/munge.socket" ]; do
        _sl_alive "$_sl_munged" ||
            { _sl_why="munged exited while starting: $(ci_last_line "$_sl_dir/munged.out")"; return 1; }
        [ $SECONDS -lt $deadline ] || { _sl_why="munged made no socket within 10 s"; return 1; }
        sleep 0.1
    done

    _sl_spawn "$_sl_dir/slurmctld.out" slurmctld -D -f "$_sl_conf"
    _sl_ctld=$_sl_bg
    _sl_spawn "$_sl_dir/slurmd.out" slurmd -D -N localhost -f "$_sl_conf"
    _sl_slurmd=$_sl_bg

    deadline=$((SECONDS + 60))
    state=""
    while :; do
        _sl_alive "$_sl_ctld" ||
            { _sl_why="slurmctld exited while starting: $(ci_last_line "$_sl_dir/slurmctld.log")"; return 1; }
        _sl_alive "$_sl_slurmd" ||
            { _sl_why="slurmd exited while starting: $(ci_last_line "$_sl_dir/slurmd.log")"; return 1; }
        state=$(SLURM_CONF=$_sl_conf timeout 5 sinfo -h -n localhost -o %T 2>/dev/null) || state=""
        [ "$state" = idle ] && break
        # slurmd registered but the node is unusable (inval: this machine has
        # less than the configuration says).
        case $state in inval* | drain* | drng* | fail*)
            out=$(SLURM_CONF=$_sl_conf timeout 5 sinfo -h -n localhost -o %E 2>/dev/null) || out=""
            _sl_why="node localhost is $state (${out:-no reason}; slurmctld.log: $(ci_last_line "$_sl_dir/slurmctld.log"))"
            return 1
            ;;
        esac
        [ $SECONDS -lt $deadline ] ||
            { _sl_why="node localhost is not idle within 60 s (sinfo: ${state:-no answer}; slurmd.log: $(ci_last_line "$_sl_dir/slurmd.log"))"; return 1; }
        sleep 0.2
    done
    # A job must run to the end: srun returns as soon as it has.
    out=$(cd -- "$_sl_dir" && SLURM_CONF=$_sl_conf timeout $((deadline - SECONDS + 1)) \
        srun -N1 -n1 -J foldwise-ci-probe true 2>&1) ||
        { _sl_why="srun -N1 true did not succeed within 60 s: $(echo "${out:-no output}" | tail -n 1)"; return 1; }

    out=$(SLURM_CONF=$_sl_conf sinfo -V 2>/dev/null) || out="?"
    echo "Slurm ${out##* }: single-host cluster up, SLURM_CONF=$_sl_conf (munged pid $_sl_munged, slurmctld pid $_sl_ctld, slurmd pid $_sl_slurmd, $cpus CPUs, ${mem} MB) in $((SECONDS - started)) s$installed" >&2
    export FOLDWISE_TEST_SLURM=1
    export SLURM_CONF=$_sl_conf
}

if ! _sl_start; then
    echo "note: no Slurm cluster: ${_sl_why:-unknown failure}; the Slurm executor tests will print that they were skipped" >&2
    _sl_stop
fi
: # the sourcing always succeeds: CI goes on without the cluster
