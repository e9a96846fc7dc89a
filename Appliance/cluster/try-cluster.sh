#!/usr/bin/env bash
# Cluster mode on one machine, to try it: a private PostgreSQL, three Tally instances and HAProxy
# in front, all on loopback. Ctrl-C stops everything and deletes the database.
#
#   Appliance/cluster/try-cluster.sh [extra `tally serve` options, e.g. --operator-password …]
#   TRY_BINARY=/usr/bin/tally Appliance/cluster/try-cluster.sh     (no build)
#
# Debian 12 / Ubuntu 22.04+ with Swift 6.1 or later. Installs postgresql and haproxy when missing
# (their own services are not started: only this script's copies run). Run as root or a sudoer.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
FRONT_PORT="${FRONT_PORT:-8080}"
INSTANCE_PORTS=(8081 8082 8083)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root (or sudo) to run: $*"; fi
}

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
    say "installing ${missing[*]}"
    # Never let a package's maintainer script start a daemon (Debian's own PostgreSQL cluster,
    # HAProxy on port 80): this script runs private copies on loopback.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
    fi
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install postgresql haproxy curl
# Debian keeps the server programs off the PATH, under the major version.
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$PG_BIN/initdb" ] || die "no PostgreSQL server programs under /usr/lib/postgresql/*/bin"

# TRY_BINARY=path skips the build (a .deb's /usr/bin/tally, another build).
TALLY="${TRY_BINARY:-}"
if [ -z "$TALLY" ]; then
    say "building tally (release)"
    "$ROOT/Appliance/dev.sh" build release
    TALLY="$ROOT/.build/release/tally"  # where dev.sh builds it
fi
[ -x "$TALLY" ] || die "no tally binary at $TALLY"

WORK="$(mktemp -d /tmp/tally-cluster-XXXXXX)"
PIDS=()
PG_STARTED=
# PostgreSQL refuses to run as root: as root, run it as the `postgres` user the package made.
if [ "$(id -u)" -eq 0 ]; then as_pg() { runuser -u postgres -- "$@"; }; chown postgres "$WORK"; else as_pg() { "$@"; }; fi

cleanup() {
    trap - EXIT INT TERM
    say "stopping"
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -n "$PG_STARTED" ] && as_pg "$PG_BIN/pg_ctl" stop -D "$WORK/pg" -m fast -w >/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port for PostgreSQL (the machine's own may be on 5432).
PG_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
say "PostgreSQL on 127.0.0.1:$PG_PORT (data in $WORK/pg)"
as_pg "$PG_BIN/initdb" -D "$WORK/pg" -U postgres -E UTF8 --auth=trust >/dev/null
cat >> "$WORK/pg/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK'
CONF
# Trust, on loopback only: a throwaway database on this machine. Production uses a password
# (Systemd/tally@.service passes it from a file).
echo "host all all 127.0.0.1/32 trust" > "$WORK/pg/pg_hba.conf"
as_pg "$PG_BIN/pg_ctl" start -D "$WORK/pg" -l "$WORK/pg.log" -w >/dev/null
PG_STARTED=1
as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres tally
STORE="postgresql://postgres@127.0.0.1:$PG_PORT/tally"

for port in "${INSTANCE_PORTS[@]}"; do
    mkdir -p "$WORK/tally-$port"
    # --trusted-proxies: HAProxy (on loopback) names each phone in X-Forwarded-For.
    "$TALLY" serve --store "$STORE" --host 127.0.0.1 --port "$port" --data-dir "$WORK/tally-$port" --no-mdns \
        --trusted-proxies 127.0.0.1 --public-url "http://localhost:$FRONT_PORT" "$@" >"$WORK/tally-$port.log" 2>&1 &
    PIDS+=($!)
    # The first instance creates the schema; the others start once it answers.
    for _ in $(seq 300); do
        curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        kill -0 "${PIDS[-1]}" 2>/dev/null || die "instance on $port stopped: $(tail -5 "$WORK/tally-$port.log")"
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || die "instance on $port is not ready: $(tail -5 "$WORK/tally-$port.log")"
done

# The shipped configuration, with this machine's ports, run in the foreground, without the
# parts that need HAProxy's system setup (chroot, user, system log socket), and sized for a
# try-out (a hall's maxconn needs more open files than a login shell may have).
sed -e "s/^\( *bind \):80$/\1127.0.0.1:$FRONT_PORT/" -e '/^ *bind :443/d' \
    -e 's|^\( *\)log /dev/log .*|\1log stdout format raw local0 notice|' -e '/^ *\(chroot\|user\|group\|daemon\|stats socket\)/d' \
    -e 's/^\( *maxconn\) [0-9]*$/\1 2000/' \
    Appliance/cluster/haproxy.cfg > "$WORK/haproxy.cfg"
haproxy -c -q -f "$WORK/haproxy.cfg" || die "haproxy configuration rejected"
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)

cat >&2 <<TEXT

  Tally cluster: 3 instances sharing PostgreSQL, behind HAProxy
    presenter   http://localhost:$FRONT_PORT/presenter
    join        http://localhost:$FRONT_PORT/
    HAProxy     http://127.0.0.1:8404/        (which instances are up)
    instances   ${INSTANCE_PORTS[*]/#/http://127.0.0.1:}
    logs        $WORK/*.log

  Try: kill -9 one instance (pids ${PIDS[*]:0:3}): the pages carry on through the others;
       stop PostgreSQL for a while and start it again (votes get 503 and Retry-After
       meanwhile, streams stay open):
         $( [ "$(id -u)" -eq 0 ] && printf 'runuser -u postgres -- ' )$PG_BIN/pg_ctl stop -D $WORK/pg -m fast
         $( [ "$(id -u)" -eq 0 ] && printf 'runuser -u postgres -- ' )$PG_BIN/pg_ctl start -D $WORK/pg -l $WORK/pg.log
  Ctrl-C stops everything.
TEXT
# Until Ctrl-C or HAProxy stops (an instance killed on purpose is part of trying it).
wait "${PIDS[-1]}" || true
say "HAProxy stopped; see $WORK/haproxy.log"
