#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine for tests and trials: munged (unless one already
# runs), slurmctld and slurmd, as root, no systemd. Idempotent: a second call finds it up and returns.
# Its state lives in STATE (default /tmp/img2npz-slurm). The config goes to /etc/slurm/slurm.conf,
# the one place every SLURM client finds without help (the executor plugin's job step drops
# SLURM_* variables, SLURM_CONF included); an existing slurm.conf not written by this script is
# never replaced.
# Needs: apt-get install --no-install-recommends slurmctld slurmd slurm-client munge
# Stop with tests/slurm/stop-cluster.sh STATE (stops only what this script started).
set -euo pipefail
STATE=$(realpath -m "${1:-/tmp/img2npz-slurm}")
NODE=$(hostname -s)
CPUS=${SLURM_TEST_CPUS:-8}           # advertised (profiles/slurm asks up to 8); may exceed the real cores (SlurmdParameters)
MEMORY_MB=${SLURM_TEST_MEMORY_MB:-16000}
CONF=/etc/slurm/slurm.conf
MARK="# Written by tests/slurm/start-cluster.sh"

alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" && scontrol ping 2>/dev/null | grep -q UP; then
    exit 0
fi
[[ $(id -u) == 0 ]] || { echo "start-cluster.sh: run as root (slurmd starts jobs as their user)" >&2; exit 1; }
for tool in munged slurmctld slurmd scontrol sbatch; do
    command -v "$tool" >/dev/null || { echo "start-cluster.sh: $tool missing (apt-get install slurmctld slurmd slurm-client munge)" >&2; exit 1; }
done
if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    echo "start-cluster.sh: $CONF exists and is not ours; this machine has its own SLURM" >&2
    exit 1
fi
mkdir -p "$STATE/ctld" "$STATE/spool" /etc/slurm

if ! pgrep -x munged >/dev/null; then  # munged runs as the munge user, so its pid file sits in a folder of its own
    install -d -o munge -g munge -m 0755 /run/munge "$STATE/munge"
    runuser -u munge -- /usr/sbin/munged --pid-file="$STATE/munge/munged.pid"
fi

cat > "$CONF" <<CONF
$MARK (state in $STATE): one node, no accounting, no cgroups.
ClusterName=img2npz
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=86400
SchedulerParameters=sched_interval=2,bf_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=$NODE CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF

alive "$STATE/slurmctld.pid" || slurmctld
alive "$STATE/slurmd.pid" || slurmd
for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        exit 0
    fi
    sleep 0.2
done
echo "start-cluster.sh: the node did not come up; see $STATE/slurmctld.log and $STATE/slurmd.log" >&2
exit 1
