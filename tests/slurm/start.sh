#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost for the tests: munged, slurmctld, slurmd.
#
#   tests/slurm/start.sh STATE_DIR [PARTITION]
#
# Installs Debian's slurm-wlm and munge when missing (apt-get; needs root). Writes
# /etc/slurm/slurm.conf (the plugin's job steps drop SLURM_CONF, so it must be the default
# path), after moving an existing one to slurm.conf.wavbrivl-backup. Logs and spool go to
# STATE_DIR; what it started is recorded in /run/wavbrivl-slurm-test, and
# tests/slurm/stop.sh stops that and restores the config. A run killed before stop.sh
# leaves that directory behind: the next start.sh stops what it names first.
# Exit status 77: SLURM cannot be set up on this machine (the reason is on stderr).
set -euo pipefail

STATE=$(realpath -m "${1:?usage: start.sh STATE_DIR [PARTITION]}")
PARTITION=${2:-wavbrivl-test}
HERE=$(cd "$(dirname "$0")" && pwd)
RUN=/run/wavbrivl-slurm-test
CONF=/etc/slurm/slurm.conf
BACKUP=$CONF.wavbrivl-backup
WAIT_S=${WAVBRIVL_SLURM_START_TIMEOUT:-60}

cannot() { echo "start.sh: cannot set up SLURM here: $*" >&2; exit 77; }
log() { echo "start.sh: $*" >&2; }

[[ $(id -u) == 0 ]] || cannot "not root (apt-get and the daemons need root)"
[[ $(uname -s) == Linux ]] || cannot "not Linux"

# --- install -----------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v squeue >/dev/null; then
    command -v apt-get >/dev/null || cannot "slurm-wlm/munge missing and no apt-get"
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -q >"$STATE.apt.log" 2>&1 \
        || cannot "apt-get update failed (see $STATE.apt.log)"
    timeout 600 apt-get install -y -q --no-install-recommends slurm-wlm munge \
        >>"$STATE.apt.log" 2>&1 || cannot "apt-get install slurm-wlm munge failed (see $STATE.apt.log)"
fi

if [[ -d $RUN ]]; then
    log "an earlier test run did not stop its SLURM: stopping what $RUN names"
    "$HERE/stop.sh"
fi
pgrep -x slurmctld >/dev/null && cannot "a slurmctld is already running on this machine"
pgrep -x slurmd >/dev/null && cannot "a slurmd is already running on this machine"
[[ -e $BACKUP ]] && cannot "$BACKUP exists: an earlier test run did not restore it"

mkdir -p "$STATE/slurmctld" "$STATE/slurmd" "$RUN"

# --- munge: reuse a running munged, else start one as the munge user (it refuses root) ----
if timeout 10 munge -n 2>/dev/null | timeout 10 unmunge >/dev/null 2>&1; then
    log "using the munged already running"
else
    if [[ ! -s /etc/munge/munge.key ]]; then
        install -d -o munge -g munge -m 0700 /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    runuser -u munge -- munged
    cp /run/munge/munged.pid "$RUN/munged.pid"
    ok=0
    for _ in $(seq "$WAIT_S"); do
        if timeout 10 munge -n 2>/dev/null | timeout 10 unmunge >/dev/null 2>&1; then ok=1; break; fi
        sleep 1
    done
    [[ $ok == 1 ]] || { log "munged did not answer within ${WAIT_S}s"; exit 1; }
fi

# --- slurm.conf: twice this machine's CPUs (see slurm.conf.in), 90 % of its memory --------
cpus=$(( $(nproc) * 2 ))
mem_mb=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
mem_mb=$(( mem_mb * 9 / 10 ))
mkdir -p /etc/slurm
[[ -e $CONF ]] && mv "$CONF" "$BACKUP"
touch "$RUN/conf.installed"  # stop.sh: remove our file, put the backup back
sed -e "s|@STATE@|$STATE|g" -e "s|@RUN@|$RUN|g" -e "s|@CPUS@|$cpus|" -e "s|@MEM_MB@|$mem_mb|" \
    -e "s|@PARTITION@|$PARTITION|" \
    -e "s|@CTLD_PORT@|${WAVBRIVL_SLURMCTLD_PORT:-6817}|" \
    -e "s|@SLURMD_PORT@|${WAVBRIVL_SLURMD_PORT:-6818}|" \
    "$HERE/slurm.conf.in" >"$CONF"
log "node localhost: CPUs=$cpus RealMemory=$mem_mb, partition $PARTITION"

# --- daemons (both fork into the background and write their pid files) -------------------
slurmctld -i
slurmd -N localhost

for _ in $(seq "$WAIT_S"); do
    state=$(timeout 10 sinfo -h -n localhost -o %T 2>/dev/null || true)
    if [[ $state == idle ]]; then
        log "SLURM is up (node localhost idle)"
        exit 0
    fi
    sleep 1
done
log "the node did not become idle within ${WAIT_S}s (state: '${state:-none}'); see $STATE/*.log"
exit 1
