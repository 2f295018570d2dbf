#!/usr/bin/env bash
# Stop what tests/slurm/start.sh started (recorded in /run/wavbrivl-slurm-test) and restore
# /etc/slurm/slurm.conf. Safe to run more than once, after a start that failed half way, and
# when start.sh refused to start (it then touches nothing).
#
#   tests/slurm/stop.sh
set -uo pipefail

RUN=/run/wavbrivl-slurm-test
CONF=/etc/slurm/slurm.conf
BACKUP=$CONF.wavbrivl-backup
WAIT_S=${WAVBRIVL_SLURM_STOP_TIMEOUT:-30}

log() { echo "stop.sh: $*" >&2; }

[[ -d $RUN ]] || exit 0

alive() { [[ -s $1 ]] && kill -0 "$(<"$1")" 2>/dev/null; }

# Jobs first, while slurmctld and slurmd can still end them: slurmd leaves running job
# steps alone when it stops, so wait until the queue is empty (KillWait is 5 s).
if alive "$RUN/slurmctld.pid"; then
    timeout 10 scancel --partition "$(sed -n 's/^PartitionName=\([^ ]*\).*/\1/p' "$CONF")" \
        2>/dev/null || true
    for _ in $(seq $((WAIT_S * 5))); do
        [[ -z $(timeout 10 squeue -h -o %i 2>/dev/null) ]] && break
        sleep 0.2
    done
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

stop_pid_file slurmd "$RUN/slurmd.pid"
stop_pid_file slurmctld "$RUN/slurmctld.pid"
stop_pid_file munged "$RUN/munged.pid"

if [[ -e $RUN/conf.installed ]]; then
    rm -f "$CONF"
    [[ -e $BACKUP ]] && mv "$BACKUP" "$CONF"
    rm -f "$RUN/conf.installed"
fi
rmdir "$RUN" 2>/dev/null || log "$RUN not empty, left: $(ls "$RUN")"
exit 0
