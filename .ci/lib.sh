# shellcheck shell=bash
# Helpers shared by the service scripts .ci/seaweedfs.sh and .ci/slurm.sh
# (each sources this file from its own folder).

# Last non-blank line of the file $1 on one line, for a one-line reason.
ci_last_line() {
    local l
    l=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1) || true
    echo "${l:-no output}" | tr -s '[:space:]' ' ' | sed 's/ *$//'
}
