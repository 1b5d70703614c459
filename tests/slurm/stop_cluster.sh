#!/usr/bin/env bash
# Stop the daemons start_cluster.sh started in DIR, by the PIDs it recorded (never by name):
# SIGTERM to all at once, SIGKILL to any still running after 10 s. Then remove DIR, unless
# KEEP_SLURM_DIR=1 (its log/ folder tells why a job failed).
set -uo pipefail
dir=$(realpath -m "${1:?usage: stop_cluster.sh DIR}")
[[ -f $dir/pids ]] || exit 0
mapfile -t entries <"$dir/pids"  # "name pid" lines
for entry in "${entries[@]}"; do
    kill "${entry#* }" 2>/dev/null
done
for _ in $(seq 100); do
    running=0
    for entry in "${entries[@]}"; do
        kill -0 "${entry#* }" 2>/dev/null && running=1
    done
    ((running)) || break
    sleep 0.1
done
for entry in "${entries[@]}"; do
    kill -9 "${entry#* }" 2>/dev/null && echo "stop_cluster: killed ${entry% *}" >&2
done
[[ ${KEEP_SLURM_DIR:-0} == 1 ]] || rm -rf "$dir"
exit 0
