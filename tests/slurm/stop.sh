#!/usr/bin/env bash
# Take down the single-node test cluster started by tests/slurm/start.sh:
# cancel its jobs, then stop slurmd, slurmctld and munged. Idempotent.
# Leaves /etc/slurm and the packages in place (start.sh reuses them).
set -uo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo -n"
fi
export PATH="$PATH:/usr/sbin:/sbin"

log() { echo "stop.sh: $*"; }

. "$(dirname "$0")/common.sh"

stop_daemon() {
    local pidfile=$1 name=$2 pid
    pid=$(running_pid "$pidfile" "$name")
    if [ -z "$pid" ]; then
        log "$name not running"
        return 0
    fi
    log "stopping $name (pid $pid)"
    $SUDO kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        [ -r "/proc/$pid/comm" ] || break
        sleep 0.1
    done
    if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ]; then
        log "$name did not stop, sending SIGKILL"
        $SUDO kill -9 "$pid" 2>/dev/null || true
    fi
    $SUDO rm -f "$pidfile"
}

# Cancel remaining jobs first, so that no job keeps running untracked.
if [ -n "$(running_pid /run/slurmctld.pid slurmctld)" ]; then
    jobs=$(squeue -h -t PENDING,RUNNING,SUSPENDED,CONFIGURING,COMPLETING -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        log "cancelling jobs: $(echo $jobs)"
        # shellcheck disable=SC2086
        $SUDO scancel $jobs 2>/dev/null || true
        sleep 1
    fi
fi

stop_daemon /run/slurmd.pid slurmd
stop_daemon /run/slurmctld.pid slurmctld
stop_daemon /run/munge/munged.pid munged
log "done"
