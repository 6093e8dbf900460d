#!/usr/bin/env bash
# Start a one-node SLURM cluster (munged, slurmctld, slurmd) on loopback for the `slurm` tests.
#
# Installs the Debian packages if missing, writes /etc/slurm/slurm.conf from
# .ci/slurm.conf.template (this host as the only node), starts the daemons in the background
# with their PID files in $UPO_SLURM_DIR (default /tmp/upo-slurm) and waits until the node is
# idle. Idempotent: daemons already running from an earlier call are left alone.
# Needs root (apt-get, /etc/slurm, daemons running as root). Stop with .ci/slurm-down.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${UPO_SLURM_DIR:-/tmp/upo-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# upo-bench CI"
TIMEOUT="${UPO_SLURM_TIMEOUT:-90}"

say() { echo "[slurm-up] $*"; }
die() { echo "[slurm-up] ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, writes $CONF, starts daemons)"

# 1. Packages.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    say "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
else
    say "packages present: $(slurmctld -V)"
fi

# 2. Config: this host is the only node; leave below the machine's memory for the OS.
mkdir -p "$STATE/ctld" "$STATE/spool" /etc/slurm
HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
REAL_MB=$(( MEM_MB * 9 / 10 ))
if [ -f "$CONF" ] && ! head -n 1 "$CONF" | grep -q "^$MARK"; then
    die "$CONF exists and was not written by this script; refusing to overwrite it"
fi
sed -e "s|@HOST@|$HOST|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM@|$REAL_MB|g" -e "s|@STATE@|$STATE|g" \
    "$HERE/slurm.conf.template" > "$CONF.tmp"
mv "$CONF.tmp" "$CONF"
chmod 0644 "$CONF"
say "wrote $CONF: node $HOST (127.0.0.1), CPUs=$CPUS, RealMemory=${REAL_MB} MB, state in $STATE"

# A PID file whose process is alive and runs the expected program.
running() {  # running <pidfile> <program>
    local pid
    [ -s "$1" ] || return 1
    pid="$(cat "$1")"
    [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

# 3. munge: a key if absent, then munged as the munge user (it refuses keys owned by others).
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
if running "$STATE/munged.pid" munged; then
    say "munged already running (pid $(cat "$STATE/munged.pid"))"
elif munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    # e.g. started by systemd when the package was installed: use it, but it is not ours to stop.
    say "using a munged not started by this script (left running by slurm-down.sh)"
else
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$STATE/munged.pid"
    say "started munged (pid $(cat "$STATE/munged.pid"))"
fi
munge -n | unmunge >/dev/null || die "munge round trip failed; see /var/log/munge/munged.log"

# 4. slurmctld, then slurmd; both daemonise and write the PID files named in slurm.conf.
if running "$STATE/slurmctld.pid" slurmctld; then
    say "slurmctld already running (pid $(cat "$STATE/slurmctld.pid"))"
else
    slurmctld
    for _ in $(seq 100); do running "$STATE/slurmctld.pid" slurmctld && break; sleep 0.1; done
    running "$STATE/slurmctld.pid" slurmctld || die "slurmctld did not start; see $STATE/slurmctld.log"
    say "started slurmctld (pid $(cat "$STATE/slurmctld.pid"))"
fi
if running "$STATE/slurmd.pid" slurmd; then
    say "slurmd already running (pid $(cat "$STATE/slurmd.pid"))"
else
    slurmd
    for _ in $(seq 100); do running "$STATE/slurmd.pid" slurmd && break; sleep 0.1; done
    running "$STATE/slurmd.pid" slurmd || die "slurmd did not start; see $STATE/slurmd.log"
    say "started slurmd (pid $(cat "$STATE/slurmd.pid"))"
fi

# 5. Wait for the node to accept jobs.
deadline=$(( SECONDS + TIMEOUT ))
while true; do
    node_state="$(sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null || true)"
    case "$node_state" in
        idle|mixed|allocated) break ;;
        down*|drain*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
        die "node $HOST not idle after ${TIMEOUT}s (state: '${node_state:-no answer}'); see $STATE/slurmctld.log and $STATE/slurmd.log"
    fi
    sleep 1
done
say "cluster up: $(sinfo -h -N -o '%N %P %T %c CPUs %m MB')"
