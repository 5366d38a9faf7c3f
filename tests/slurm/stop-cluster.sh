#!/usr/bin/env bash
# Stop what tests/slurm/start-cluster.sh started in STATE (default /tmp/img2npz-slurm), remove STATE
# and the slurm.conf it wrote; daemons it did not start (a munged already running) are left alone.
set -uo pipefail
STATE=$(realpath -m "${1:-/tmp/img2npz-slurm}")
[[ -d "$STATE" ]] || exit 0
for pid_file in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munge/munged.pid"; do
    [[ -s "$pid_file" ]] || continue
    pid=$(cat "$pid_file")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
done
rm -rf "$STATE"
if grep -qF "# Written by tests/slurm/start-cluster.sh (state in $STATE)" /etc/slurm/slurm.conf 2>/dev/null; then
    rm -f /etc/slurm/slurm.conf
fi
