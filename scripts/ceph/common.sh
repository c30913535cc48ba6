# shellcheck shell=bash disable=SC2034 # sourced: the variables are used by the scripts
# Shared settings for scripts/ceph/start and scripts/ceph/stop. Sourced, not executed.
#
# A single-host Ceph cluster on loopback, for the S3 backend's tests and benchmark:
# one monitor, one memstore OSD (objects live in the OSD's RAM) and radosgw, from
# Debian's packages, with no authentication inside the cluster. Every file it
# writes is under one state directory; nothing in /etc/ceph or /var/lib/ceph is used.
#
# Environment:
#   UBLK_CEPH_DIR=DIR        state directory (default ${TMPDIR:-/tmp}/ublk-ceph)
#   UBLK_CEPH_MON_PORT=N     monitor port (default 3300)
#   UBLK_CEPH_RGW_PORT=N     radosgw's S3 port (default 7480)
#   UBLK_CEPH_OSD_BYTES=N    memstore capacity (default 4 GiB; the OSD's RAM grows with the data)
#   UBLK_CEPH_BUCKET=NAME    the bucket to create (default ublk)

CEPH_STATE=${UBLK_CEPH_DIR:-${TMPDIR:-/tmp}/ublk-ceph}
CEPH_MON_PORT=${UBLK_CEPH_MON_PORT:-3300}
CEPH_RGW_PORT=${UBLK_CEPH_RGW_PORT:-7480}
CEPH_OSD_BYTES=${UBLK_CEPH_OSD_BYTES:-4294967296}
CEPH_BUCKET=${UBLK_CEPH_BUCKET:-ublk}
CEPH_PACKAGES=(ceph-mon ceph-osd radosgw ceph-common curl)
# The daemons, in the order they start (stop goes in reverse).
CEPH_DAEMONS=(mon osd rgw)

export CEPH_CONF=$CEPH_STATE/ceph.conf

ceph_say() { printf 'ublk-ceph: %s\n' "$*" >&2; }
ceph_die() {
  ceph_say "error: $*"
  exit 1
}

# ceph_pid NAME: the pid of a daemon we started, if it is still running.
ceph_pid() {
  local pid
  pid=$(cat "$CEPH_STATE/$1.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# ceph_stop_daemons: SIGTERM each daemon we started, newest first, and wait for it to go.
ceph_stop_daemons() {
  local i name pid n
  for ((i = ${#CEPH_DAEMONS[@]} - 1; i >= 0; i--)); do
    name=${CEPH_DAEMONS[i]}
    pid=$(ceph_pid "$name") || continue
    kill -TERM "$pid" 2>/dev/null || true
    for ((n = 0; n < 100; n++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      ceph_say "$name (pid $pid) ignored SIGTERM for 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$CEPH_STATE/$name.pid"
  done
}
