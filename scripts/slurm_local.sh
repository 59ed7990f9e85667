#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for trying cluster sweeps and for the tests.
#
#   eval "$(bash scripts/slurm_local.sh start)"   # prints the exports below; the node is idle
#   sbatch --wrap hostname; squeue; python train.py -m hydra/launcher=slurm_local ...
#   bash scripts/slurm_local.sh stop              # stops exactly the daemons it started
#
# Installs Debian's slurm-wlm when it is missing (as setup.sh installs bubblewrap), writes the
# config, state and logs under $SLURM_LOCAL_DIR (default /tmp/hybrid_rl_slurm), and runs
# slurmctld and slurmd in the foreground mode as background processes (no systemd). No munge:
# auth/none, fine for one machine, never for a shared cluster. The node declares
# $SLURM_LOCAL_CPUS CPUs (default 4, more than a 2-core machine has: config_overrides) so two
# 2-task jobs fit at once. Ports 6817/6818 must be free.
#
# Job states: without an accounting database `sacct` answers "accounting storage is disabled",
# and submitit (Hydra's SLURM launcher), which asks sacct, then waits forever on a job killed
# before it wrote a result. A real cluster runs slurmdbd (it needs MySQL/MariaDB); this one puts
# a small `sacct` first on PATH that answers submitit's question from `scontrol show job`
# (slurmctld keeps a finished job's state for MinJobAge, 300 s), so a cancelled job is seen as
# CANCELLED, as on a real cluster.
set -euo pipefail

dir="${SLURM_LOCAL_DIR:-/tmp/hybrid_rl_slurm}"
cpus="${SLURM_LOCAL_CPUS:-4}"
conf="$dir/slurm.conf"

install_slurm() {
  command -v slurmctld >/dev/null 2>&1 && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    sudo -n true 2>/dev/null || { echo "slurm_local.sh: slurm-wlm is missing and installing it needs root" >&2; exit 3; }
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "slurm_local.sh: slurm-wlm is missing and there is no apt-get to install it" >&2; exit 3; }
  "${sudo[@]}" apt-get install -y -q --no-install-recommends slurm-wlm >/dev/null 2>&1 \
    || { "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" apt-get install -y -q --no-install-recommends slurm-wlm >/dev/null; }
}

write_sacct() {
  mkdir -p "$dir/bin"
  cat > "$dir/bin/sacct" <<'EOF'
#!/usr/bin/env bash
# sacct -o JobID,State,NodeList --parsable2 -j ID [-j ID ...], answered from scontrol
# (scripts/slurm_local.sh: this cluster has no accounting database).
ids=()
while [ $# -gt 0 ]; do
  case "$1" in -j) ids+=("$2"); shift 2 ;; *) shift ;; esac
done
echo "JobID|State|NodeList"
for id in "${ids[@]}"; do
  scontrol show job "$id" -o 2>/dev/null | while read -r line; do
    declare -A f=()
    for pair in $line; do f["${pair%%=*}"]="${pair#*=}"; done
    job="${f[JobId]}"
    if [ -n "${f[ArrayTaskId]:-}" ]; then
      task="${f[ArrayTaskId]}"
      case "$task" in *-*|*,*) task="[${task%%%*}]" ;; esac
      job="${f[ArrayJobId]}_$task"
    fi
    echo "$job|${f[JobState]}|${f[NodeList]:-None assigned}"
  done
done
EOF
  chmod +x "$dir/bin/sacct"
}

write_config() {
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  cat > "$conf" <<EOF
ClusterName=hybridrl
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=$(id -un)
AuthType=auth/none
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$(hostname -s) NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

exports() { echo "export SLURM_CONF=$conf PATH=$dir/bin:\$PATH"; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  install_slurm
  if alive "$dir/slurmctld.started" && alive "$dir/slurmd.started"; then
    exports  # already running: the same cluster
    return 0
  fi
  stop >/dev/null 2>&1 || true
  write_config
  write_sacct
  export SLURM_CONF="$conf"
  # -D: the foreground mode, so the recorded pid is the daemon's own; -c: a clean state
  setsid slurmctld -D -c -f "$conf" >"$dir/log/slurmctld.out" 2>&1 < /dev/null &
  echo $! > "$dir/slurmctld.started"
  setsid slurmd -D -f "$conf" >"$dir/log/slurmd.out" 2>&1 < /dev/null &
  echo $! > "$dir/slurmd.started"
  for _ in $(seq 1 100); do
    if [ "$(sinfo -h -o %t 2>/dev/null | head -1)" = "idle" ]; then
      exports
      return 0
    fi
    for daemon in slurmctld slurmd; do
      alive "$dir/$daemon.started" || { echo "slurm_local.sh: $daemon exited; its log:" >&2; tail -20 "$dir/log/$daemon.log" "$dir/log/$daemon.out" >&2 2>/dev/null; exit 4; }
    done
    sleep 0.2
  done
  echo "slurm_local.sh: the node did not become idle in 20 s; logs in $dir/log" >&2
  stop >/dev/null 2>&1 || true
  exit 4
}

stop() {
  local pids=()
  for daemon in slurmd slurmctld; do
    [ -f "$dir/$daemon.started" ] && pids+=("$(cat "$dir/$daemon.started")")
  done
  [ ${#pids[@]} -gt 0 ] || { echo "slurm_local.sh: nothing to stop"; return 0; }
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    local left=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -f "$dir/slurmd.started" "$dir/slurmctld.started"
  echo "slurm_local.sh: stopped slurmctld and slurmd (pids ${pids[*]})"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: bash scripts/slurm_local.sh start|stop" >&2; exit 2 ;;
esac
