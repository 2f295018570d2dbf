#!/usr/bin/env bash
# Stop what tests/slurm/start.sh STATE_DIR started and restore /etc/slurm/slurm.conf.
# Safe to run more than once, and after a start that failed half way.
set -uo pipefail

STATE=$(realpath -m "${1:?usage: stop.sh STATE_DIR}")
CONF=/etc/slurm/slurm.conf
BACKUP=$CONF.wavbrivl-backup
WAIT_S=${WAVBRIVL_SLURM_STOP_TIMEOUT:-30}

log() { echo "stop.sh: $*" >&2; }

# Jobs first, while slurmctld can still cancel them.
if [[ -e $STATE/slurmctld.pid ]]; then
    timeout 10 scancel --partition "$(sed -n 's/^PartitionName=\([^ ]*\).*/\1/p' "$CONF")" \
        2>/dev/null || true
fi

# Stop one daemon by the pid its pid file names; SIGKILL if it outlives WAIT_S.
stop_pid_file() {
    local name=$1 pid_file=$2 pid
    [[ -s $pid_file ]] || return 0
    pid=$(<"$pid_file")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq $((WAIT_S * 5))); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name ($pid) ignored SIGTERM for ${WAIT_S}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    rm -f "$pid_file"
}

stop_pid_file slurmd "$STATE/slurmd.pid"
stop_pid_file slurmctld "$STATE/slurmctld.pid"
stop_pid_file munged "$STATE/munged.pid"

if [[ -e $STATE/conf.installed ]]; then
    rm -f "$CONF"
    [[ -e $BACKUP ]] && mv "$BACKUP" "$CONF"
    rm -f "$STATE/conf.installed"
fi
exit 0
