#!/usr/bin/env bash
# Stop the daemons started by .ci/slurm-up.sh, by the PIDs in their PID files, and only them.
# A PID file whose process is gone or runs another program is just removed. Always exits 0 so
# it can sit in a trap.
set -uo pipefail

STATE="${UPO_SLURM_DIR:-/tmp/upo-slurm}"
say() { echo "[slurm-down] $*"; }

stop() {  # stop <pidfile> <program>
    local pid
    [ -s "$1" ] || { say "$2: no PID file"; return 0; }
    pid="$(cat "$1")"
    if [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        if [ -d "/proc/$pid" ]; then
            say "$2 (pid $pid) ignored TERM for 10 s; sending KILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        say "stopped $2 (pid $pid)"
    else
        say "$2 (pid $pid) not running"
    fi
    rm -f "$1"
}

# Reverse start order: the node, the controller, then the credential daemon they use.
stop "$STATE/slurmd.pid" slurmd
stop "$STATE/slurmctld.pid" slurmctld
stop "$STATE/munged.pid" munged
exit 0
