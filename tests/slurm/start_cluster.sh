#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost for the test suite: munged, MariaDB, slurmdbd
# (accounting: without it sacct fails and submitit cannot tell a dead job from a running one),
# slurmctld and slurmd. Everything lives under DIR: config, state, sockets, logs, and the PID
# of each daemon in DIR/pids, which stop_cluster.sh kills (never anything by name).
#
#   tests/slurm/start_cluster.sh DIR        # prints the variables to export, e.g.
#   eval "$(tests/slurm/start_cluster.sh "$(mktemp -d)")"
#
# Needs root and Debian's slurm-wlm munge slurmdbd mariadb-server (not their services).
# Written from ../shared/slurm-notes.md; SLURM 22.05 (Debian 12).
set -euo pipefail

dir=$(realpath -m "${1:?usage: start_cluster.sh DIR}")
mkdir -p "$dir"/{munge,db,run,spool/ctld,spool/d,log}
chmod 755 "$dir" "$dir/munge"  # munged refuses a socket directory others cannot enter
: >"$dir/pids"
host=$(hostname -s)

record() { echo "$1 $2" >>"$dir/pids"; }  # name pid
stamp() { echo "$(date +%s.%N) $1" >>"$dir/log/startup.times"; }  # how long each step took
stamp begin

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds
    local limit=$1 what=$2 i
    shift 2
    for ((i = 0; i < limit * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "start_cluster: $what did not come up within ${limit}s; logs in $dir/log:" >&2
    tail -n 5 "$dir"/log/* >&2 || true
    exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
db_port=$(free_port) dbd_port=$(free_port) ctld_port=$(free_port) d_port=$(free_port)

# --- munge: its own key and socket; the key must be 0400 and owned by munge
sock=$dir/munge/munge.socket.2
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
chown -R munge:munge "$dir/munge"
chmod 400 "$dir/munge/munge.key"
runuser -u munge -- munged -S "$sock" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed"
wait_for 10 munged test -s "$dir/munge/munged.pid"
record munged "$(cat "$dir/munge/munged.pid")"
stamp munged

# --- MariaDB on a private port and socket, a `slurm` user for the accounting database
db_sock=$dir/run/mariadb.sock
mariadb-install-db --user=root --datadir="$dir/db" --auth-root-authentication-method=normal \
    --skip-test-db >"$dir/log/mariadb-install.log" 2>&1
mariadbd --no-defaults --user=root --datadir="$dir/db" --socket="$db_sock" --port="$db_port" \
    --bind-address=127.0.0.1 --pid-file="$dir/run/mariadb.pid" \
    --log-error="$dir/log/mariadb.log" --skip-name-resolve >>"$dir/log/mariadb.out" 2>&1 &
record mariadbd $!
wait_for 30 mariadbd mariadb --no-defaults --socket="$db_sock" -uroot -e 'select 1'
mariadb --no-defaults --socket="$db_sock" -uroot <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'walknoise';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
stamp mariadb

# --- configuration: slurm.conf, with slurmdbd.conf beside it (mode 600)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat >"$dir/slurm.conf" <<CONF
ClusterName=walknoise
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
AccountingStoragePass=$sock
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat >"$dir/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$sock
DbdHost=localhost
DbdPort=$dbd_port
SlurmUser=root
LogFile=$dir/log/slurmdbd.log
PidFile=$dir/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=walknoise
StorageLoc=slurm_acct_db
CONF
chmod 600 "$dir/slurmdbd.conf"
export SLURM_CONF=$dir/slurm.conf

# --- the SLURM daemons, in the foreground of background jobs so that $! is the daemon
slurmdbd -D >>"$dir/log/slurmdbd.out" 2>&1 &
record slurmdbd $!
wait_for 30 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$dbd_port"
stamp slurmdbd
slurmctld -D -c >>"$dir/log/slurmctld.out" 2>&1 &
record slurmctld $!
slurmd -D >>"$dir/log/slurmd.out" 2>&1 &
record slurmd $!
wait_for 30 "the node" bash -c '[[ $(sinfo -h -o %T) == idle ]]'
stamp node-idle
wait_for 30 accounting sacct -n -X
stamp sacct

echo "export SLURM_CONF=$dir/slurm.conf"
