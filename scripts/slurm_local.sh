#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for testing slurm/*.sbatch:
# munged, slurmctld and slurmd from Debian's packages, every file (config,
# state, spool, logs, pid files, munge socket) in one scratch folder, on
# ports of its own, so it neither touches /etc/slurm nor meets another
# cluster on the same machine. Tuned for tests: a short job ends in ~2 s and
# a requeued job runs again ~6 s later (cred_expire=5) instead of ~2 min.
#
# Usage: bash scripts/slurm_local.sh start|stop|status|env
#   start   install the packages if missing (apt, needs root), write
#           slurm.conf, start the daemons, wait until the node is idle.
#           Safe to rerun: a running cluster in the same folder is kept.
#   stop    cancel every job, wait for them to end, stop the daemons by
#           their pid files.
#   status  the daemons' pids, sinfo and squeue.
#   env     print `export SLURM_CONF=...`; eval it before sbatch/squeue:
#             eval "$(bash scripts/slurm_local.sh env)"
#
# Environment:
#   FLOE_SLURM_DIR      scratch folder (default: /tmp/floe-slurm). Must not
#                       be on a path where munge refuses to keep its socket
#                       (a world-writable folder without the sticky bit).
#   FLOE_SLURM_PORT     slurmctld's port; slurmd takes the next one
#                       (default: the first free pair from 6817 up).
#   FLOE_SLURM_CPUS     CPUs the node advertises (default: nproc). More than
#                       nproc is allowed (config_overrides) to test layouts.
#   FLOE_SLURM_INSTALL  0: never run apt-get; fail if a package is missing
#                       (default: 1).
#   FLOE_SLURM_TIMEOUT  seconds to wait for the node to come up and for jobs
#                       to end on stop (default: 30).
#
# Exit status: 0 on success; 1 when something could not start (the message
# says what, and where its log is); 2 on bad usage.
set -euo pipefail

SLURM_DIR="${FLOE_SLURM_DIR:-/tmp/floe-slurm}"
TIMEOUT="${FLOE_SLURM_TIMEOUT:-30}"
PACKAGES=(slurmctld slurmd slurm-client munge)
CONF="${SLURM_DIR}/slurm.conf"
RUN_DIR="${SLURM_DIR}/run"
LOG_DIR="${SLURM_DIR}/log"
MUNGE_DIR="${SLURM_DIR}/munge"
MUNGE_SOCKET="${MUNGE_DIR}/munge.socket"

say() { printf 'slurm_local: %s\n' "$*"; }
die() {
  printf 'slurm_local: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '/^# Usage:/,/^# Exit status/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

# Prints the pid in pid file $1 when that process is alive; fails otherwise.
live_pid() {
  local pid
  [[ -s "$1" ]] || return 1
  pid="$(<"$1")"
  [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null || return 1
  echo "${pid}"
}

# Waits up to TIMEOUT seconds, polling every 0.2 s, for "$@" to succeed.
wait_for() {
  local deadline=$((SECONDS + TIMEOUT))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "${pkg}" 2>/dev/null)" != installed ]]; then
      missing+=("${pkg}")
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  [[ "${FLOE_SLURM_INSTALL:-1}" != 0 ]] ||
    die "missing packages: ${missing[*]} (FLOE_SLURM_INSTALL=0: not installing)"
  ((EUID == 0)) || die "missing packages: ${missing[*]}; installing them needs root"
  say "installing ${missing[*]}"
  # An update only when the package lists cannot provide them.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null 2>&1; then
    apt-get update >/dev/null ||
      die "apt-get update failed; install ${missing[*]} yourself"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null ||
      die "apt-get install ${missing[*]} failed"
  fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_ports() {
  local port="${FLOE_SLURM_PORT:-}"
  if [[ -n "${port}" ]]; then
    if [[ ! "${port}" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65534)); then
      die "FLOE_SLURM_PORT must be a port number below 65535, not '${port}'"
    fi
    if port_in_use "${port}" || port_in_use $((port + 1)); then
      die "FLOE_SLURM_PORT=${port}: port ${port} or $((port + 1)) is in use"
    fi
  else
    port=6817
    while port_in_use "${port}" || port_in_use $((port + 1)); do
      port=$((port + 2))
      ((port < 6917)) || die "no free port pair in 6817-6916; set FLOE_SLURM_PORT"
    done
  fi
  CTLD_PORT="${port}"
  SLURMD_PORT=$((port + 1))
}

write_conf() {
  local host cpus nproc mem_mib overrides=""
  host="$(hostname -s)"
  nproc="$(nproc)"
  cpus="${FLOE_SLURM_CPUS:-${nproc}}"
  [[ "${cpus}" =~ ^[1-9][0-9]*$ ]] || die "FLOE_SLURM_CPUS must be a positive integer"
  # Advertising more CPUs than the machine has drains the node unless slurmd
  # is told to trust the config.
  ((cpus > nproc)) && overrides="SlurmdParameters=config_overrides"
  mem_mib=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 1024))
  ((mem_mib > 0)) || mem_mib=1
  cat >"${CONF}" <<EOF
# Written by scripts/slurm_local.sh: a one-node test cluster (see there).
ClusterName=floe-local
SlurmctldHost=${host}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits cred_expire + 1 s before it runs again.
AuthInfo=socket=${MUNGE_SOCKET},cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=1
# Finished jobs stay visible to scontrol this long (there is no sacct).
MinJobAge=600
KillWait=10
StateSaveLocation=${SLURM_DIR}/state
SlurmdSpoolDir=${SLURM_DIR}/spool
SlurmctldPidFile=${RUN_DIR}/slurmctld.pid
SlurmdPidFile=${RUN_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
${overrides}
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mib} State=UNKNOWN
PartitionName=local Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if live_pid "${RUN_DIR}/munged.pid" >/dev/null; then return 0; fi
  install -d -o munge -g munge -m 0755 "${MUNGE_DIR}"
  [[ -r /etc/munge/munge.key ]] || die "/etc/munge/munge.key is missing (reinstall munge)"
  # munged writes its pid file itself, into a folder it owns.
  runuser -u munge -- /usr/sbin/munged --socket="${MUNGE_SOCKET}" \
    --pid-file="${MUNGE_DIR}/munged.pid" --log-file="${MUNGE_DIR}/munged.log" \
    --seed-file="${MUNGE_DIR}/munged.seed" ||
    die "munged did not start; see ${MUNGE_DIR}/munged.log"
  wait_for test -s "${MUNGE_DIR}/munged.pid" || die "munged wrote no pid file"
  cp "${MUNGE_DIR}/munged.pid" "${RUN_DIR}/munged.pid"
  wait_for munge_works || die "munge does not answer on ${MUNGE_SOCKET}"
}

munge_works() { munge -n -S "${MUNGE_SOCKET}" | unmunge -S "${MUNGE_SOCKET}" >/dev/null 2>&1; }

node_state() { sinfo -h -o %T 2>/dev/null | head -n 1; }
node_idle() { [[ "$(node_state)" == idle ]]; }

cmd_start() {
  ((EUID == 0)) || die "start needs root (slurmd runs as root; munged as munge)"
  install_packages
  mkdir -p "${SLURM_DIR}"
  # munged (user munge) must reach its socket folder inside.
  chmod 0755 "${SLURM_DIR}"
  mkdir -p "${RUN_DIR}" "${LOG_DIR}" "${SLURM_DIR}/state" "${SLURM_DIR}/spool"
  export SLURM_CONF="${CONF}"

  if live_pid "${RUN_DIR}/slurmctld.pid" >/dev/null &&
    live_pid "${RUN_DIR}/slurmd.pid" >/dev/null && node_idle; then
    say "already running in ${SLURM_DIR}"
    echo "export SLURM_CONF=${CONF}"
    return 0
  fi
  # A half-started cluster from before: start it over.
  stop_daemons quiet

  pick_ports
  write_conf
  start_munge
  slurmctld -c -f "${CONF}" ||
    die "slurmctld did not start; see ${LOG_DIR}/slurmctld.log"
  wait_for live_pid "${RUN_DIR}/slurmctld.pid" >/dev/null ||
    die "slurmctld exited; see ${LOG_DIR}/slurmctld.log"
  slurmd -f "${CONF}" || die "slurmd did not start; see ${LOG_DIR}/slurmd.log"
  if ! wait_for node_idle; then
    die "the node is '$(node_state)', not idle, after ${TIMEOUT} s;" \
      "see ${LOG_DIR}/slurmctld.log and ${LOG_DIR}/slurmd.log"
  fi
  say "up: node $(hostname -s) idle, slurmctld port ${CTLD_PORT}, files in ${SLURM_DIR}"
  echo "export SLURM_CONF=${CONF}"
}

no_jobs() { [[ -z "$(squeue -h -o %i 2>/dev/null)" ]]; }

# Stops every daemon whose pid file names a live process: SIGTERM, then
# SIGKILL after TIMEOUT seconds. $1 = quiet: say nothing.
stop_daemons() {
  local name pid
  for name in slurmd slurmctld munged; do
    pid="$(live_pid "${RUN_DIR}/${name}.pid")" || continue
    [[ "${1:-}" == quiet ]] || say "stopping ${name} (pid ${pid})"
    kill -TERM "${pid}" 2>/dev/null || true
    if ! wait_for eval "! kill -0 ${pid} 2>/dev/null"; then
      kill -KILL "${pid}" 2>/dev/null || true
    fi
    rm -f "${RUN_DIR}/${name}.pid"
  done
}

cmd_stop() {
  export SLURM_CONF="${CONF}"
  if [[ -f "${CONF}" ]] && live_pid "${RUN_DIR}/slurmctld.pid" >/dev/null; then
    # Running jobs outlive slurmd: end them while the cluster can still do it.
    local jobs
    jobs="$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')"
    if [[ -n "${jobs// /}" ]]; then
      say "cancelling jobs ${jobs}"
      # shellcheck disable=SC2086  # one job id per word
      scancel ${jobs} 2>/dev/null || true
      wait_for no_jobs || say "jobs still listed after ${TIMEOUT} s: $(squeue -h -o %i | tr '\n' ' ')"
    fi
  fi
  stop_daemons
  say "stopped (files kept in ${SLURM_DIR})"
}

cmd_status() {
  export SLURM_CONF="${CONF}"
  local name pid rc=0
  for name in munged slurmctld slurmd; do
    if pid="$(live_pid "${RUN_DIR}/${name}.pid")"; then
      echo "${name}: running (pid ${pid})"
    else
      echo "${name}: not running"
      rc=1
    fi
  done
  if ((rc == 0)); then
    echo "SLURM_CONF=${CONF}"
    sinfo
    squeue
  fi
  return "${rc}"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=${CONF}" ;;
  -h | --help) usage ;;
  *)
    usage
    exit 2
    ;;
esac
