#!/usr/bin/env bash
# Cluster-mode costs of issue 17, on the release build of this checkout, loopback only:
#
#   Appliance/bench/cluster.sh            # build, then everything below (about 5 minutes of running)
#   BUILD=0 Appliance/bench/cluster.sh    # reuse .build/release as it is
#   SETUPS="embedded cluster3" Appliance/bench/cluster.sh
#
# Runs, one after the other, each on fresh data (a new data directory, a new database):
#   embedded   one instance as the appliance runs (no --store, --durability fsync)
#   cluster3   three instances on one private PostgreSQL, the load through HAProxy (roundrobin)
#   cluster1   one instance on the same PostgreSQL, no HAProxy: PostgreSQL's cost without the
#              load balancer and without fan-out between instances
# and on each: tally-load adr-normal (5 × 400 WebSockets, 50 ev/s, 20 s) and tally-load votes
# (64 keep-alive connections, durable votes vs. /healthz, 10 s per phase). CPU is read from
# /proc for every process serving (the instances, HAProxy, PostgreSQL's postmaster and all its
# backends) and divided by what the client received. Everything shares the 2 cores, so the
# figures are costs, not a cluster's throughput. One table at the end, then the sizing it
# implies. The full output goes to $LOG (default /tmp/tally-cluster-bench-<time>.log).
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d /opt/swift/usr/bin ]] && export PATH=/opt/swift/usr/bin:$PATH
SETUPS=${SETUPS:-embedded cluster3 cluster1}
LOG=${LOG:-/tmp/tally-cluster-bench-$(date +%Y%m%d-%H%M%S).log}
PASSWORD=load-test-password
# Each scenario is bounded: adr-normal publishes DURATION s, votes runs VOTE_SECONDS s per phase.
DURATION=${DURATION:-20}
VOTE_SECONDS=${VOTE_SECONDS:-10}

if [[ $(id -u) != 0 ]]; then
    echo "cluster.sh runs PostgreSQL as the postgres user (runuser): run it as root" >&2
    exit 1
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [[ -z $PG_BIN || ! -x $PG_BIN/initdb ]]; then
    echo "PostgreSQL server binaries missing: apt-get install -y postgresql" >&2
    exit 1
fi
if [[ " $SETUPS " == *" cluster3 "* ]] && ! command -v haproxy >/dev/null; then
    # A package's post-install must not start the system's HAProxy: only ours runs, on loopback.
    [[ -e /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; }
    apt-get install -y --no-install-recommends haproxy
fi
if [[ ${BUILD:-1} != 0 ]]; then
    # The build shares the machine: keep it polite.
    nice -n 10 swift build -c release --product tally-load
    nice -n 10 swift build -c release --product tally
fi
TALLY=${TALLY:-$PWD/.build/release/tally}
LOAD=${LOAD:-$PWD/.build/release/tally-load}

WORK=$(mktemp -d /tmp/tally-cluster-bench.XXXXXX)
# PostgreSQL runs as postgres and must reach its directory inside this one.
chmod 755 "$WORK"
STARTED=()
PG_DATA=$WORK/pg/data
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${STARTED[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -f $PG_DATA/postmaster.pid ]]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# 2,000 WebSockets, each twice through HAProxy, need more descriptors than the default 1024.
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits (≤ 30 s) for 200 from /readyz on a port.
wait_ready() {
    local i
    for i in $(seq 1 300); do
        curl -fs -o /dev/null "http://127.0.0.1:$1/readyz" && return 0
        sleep 0.1
    done
    echo "nothing ready on port $1; the last lines of the servers' logs:" >&2
    tail -n 20 "$WORK/instances.log" "$WORK/haproxy.log" >&2 2>/dev/null || true
    curl -s "http://127.0.0.1:$1/readyz" >&2 || true
    return 1
}

# One private PostgreSQL for the whole run: trust on loopback, its own port and socket directory.
PG_PORT=$(free_port)
mkdir -p "$WORK/pg"
chown postgres "$WORK/pg"
runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --auth=trust >/dev/null
cat >>"$PG_DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/pg'
EOF
echo "host all all 127.0.0.1/32 trust" >"$PG_DATA/pg_hba.conf"
runuser -u postgres -- "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$WORK/pg/log" -w >/dev/null
PG_MASTER=$(head -n 1 "$PG_DATA/postmaster.pid")
STORE="postgresql://postgres@127.0.0.1:$PG_PORT/tally?sslmode=disable"

psql_tally() { runuser -u postgres -- "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d tally -Atc "$1" 2>/dev/null || echo 0; }
# Transactions committed in database tally so far (0 before it exists).
pg_commits() { psql_tally "SELECT xact_commit FROM pg_stat_database WHERE datname = 'tally'"; }

# Starts one instance on a fresh data directory; its pid goes into STARTED and $INSTANCE_PID.
start_instance() {
    local port=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    # Request logging at info costs CPU per request; the run measures the serving.
    "$TALLY" serve --host 127.0.0.1 --port "$port" --data-dir "$dir" --operator-password "$PASSWORD" \
        --no-mdns --rate-limits no --log-level warning --max-connections 15000 --max-connections-per-ip 15000 \
        "$@" >>"$WORK/instances.log" 2>&1 &
    INSTANCE_PID=$!
    STARTED+=("$INSTANCE_PID")
}

# Starts a setup; sets TARGET_PORT (where the load goes) and PIDS (what its CPU is summed over).
start_setup() {
    local setup=$1 run=$2 port p
    case $setup in
        embedded)
            port=$(free_port)
            start_instance "$port" "$WORK/$run/embedded" --durability fsync --ring-size 512MiB
            wait_ready "$port"
            TARGET_PORT=$port
            PIDS="tally=$INSTANCE_PID"
            ;;
        cluster1 | cluster3)
            # A new database per run, so each starts from empty tables as the embedded one does.
            runuser -u postgres -- "$PG_BIN/dropdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres --if-exists tally
            runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres tally
            local count=${setup#cluster} ports=() i
            PIDS=""
            for i in $(seq 1 "$count"); do
                port=$(free_port)
                start_instance "$port" "$WORK/$run/instance$i" --store "$STORE" --trusted-proxies 127.0.0.1
                # The first one creates the schema; the others start on it.
                wait_ready "$port"
                ports+=("$port")
                PIDS+="tally=$INSTANCE_PID,"
            done
            if [[ $count == 1 ]]; then
                TARGET_PORT=${ports[0]}
            else
                TARGET_PORT=$(free_port)
                {
                    cat <<EOF
global
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    timeout http-keep-alive 60s
frontend tally
    bind 127.0.0.1:$TARGET_PORT
    option forwardfor
    default_backend instances
backend instances
    balance roundrobin
    option httpchk GET /readyz
EOF
                    for i in "${!ports[@]}"; do echo "    server i$i 127.0.0.1:${ports[$i]} check inter 2s"; done
                } >"$WORK/$run/haproxy.cfg"
                haproxy -db -f "$WORK/$run/haproxy.cfg" >>"$WORK/haproxy.log" 2>&1 &
                STARTED+=("$!")
                PIDS+="haproxy=$!,"
                wait_ready "$TARGET_PORT"
            fi
            PIDS+="postgres=$PG_MASTER+"
            ;;
        *)
            echo "unknown setup $setup (embedded, cluster3, cluster1)" >&2
            exit 64
            ;;
    esac
}

stop_setup() {
    local pid
    for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${STARTED[@]}"; do wait "$pid" 2>/dev/null || true; done
    STARTED=()
    # Sockets in TIME_WAIT and the client's buffers settle between runs.
    sleep 2
}

{
    echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || true) $(git status --porcelain 2>/dev/null | grep -q . && echo '(uncommitted changes)')"
    echo "# $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), $("$PG_BIN/postgres" --version), $(haproxy -v 2>/dev/null | head -n 1 | cut -d' ' -f1-3), load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$LOG"

declare -A DELIVERY VOTES
run=0
for setup in $SETUPS; do
    for scenario in adr-normal votes; do
        run=$((run + 1))
        start_setup "$setup" "run$run"
        echo "## $setup: tally-load $scenario --port $TARGET_PORT --pid $PIDS" | tee -a "$LOG"
        if [[ $scenario == votes ]]; then
            args=(votes --duration "$((VOTE_SECONDS * 2))")
        else
            args=(adr-normal --duration "$DURATION")
        fi
        # Who is busy during the run, every 4 s until it ends (at most 40 readings), for the
        # log: where the CPU goes, the load generator's own share included.
        rm -f "$WORK/stop"
        (
            for _ in $(seq 1 40); do
                [[ -e $WORK/stop ]] && break
                top -b -n 1 -w 160 | awk 'NR == 1 { print "### " $0 } NR >= 7 && NR <= 15'
                sleep 4
            done
        ) >"$WORK/top.log" 2>&1 &
        top_loop=$!
        STARTED+=("$top_loop")
        commits_before=$(pg_commits)
        "$LOAD" "${args[@]}" --port "$TARGET_PORT" --pid "$PIDS" --password "$PASSWORD" 2>&1 | tee -a "$LOG" | tee "$WORK/out"
        output=$(cat "$WORK/out")
        if [[ $setup != embedded ]]; then
            # Whole run (set-up, joins and both phases). xact_commit also counts the instances'
            # reads (catch-up, the probe); the transactions that wrote events are told apart by
            # the xmin of the rows they inserted.
            sleep 1 # PostgreSQL's backends publish their counters when idle, within a second
            commits=$(($(pg_commits) - commits_before))
            written=$(psql_tally "SELECT count(*) || ' events written by ' || count(DISTINCT xmin::text) || ' transactions' FROM tally_events")
            echo "PostgreSQL, whole run: $commits transactions committed (reads included); $written" | tee -a "$LOG"
        fi
        touch "$WORK/stop"
        wait "$top_loop" 2>/dev/null || true
        cat "$WORK/top.log" >>"$LOG"
        if [[ $scenario == votes ]]; then
            VOTES[$setup]=$(grep '^bench-votes ' <<<"$output" || true)
        else
            DELIVERY[$setup]=$(grep '^bench-delivery ' <<<"$output" || true)
        fi
        stop_setup
        echo | tee -a "$LOG"
    done
done

# The value of key=… in a bench- line, or "–".
field() { grep -o "\b$2=[0-9.]*" <<<"$1" | head -n 1 | cut -d= -f2 | grep . || echo "–"; }
label() {
    case $1 in
        embedded) echo "1 embedded instance (fsync)" ;;
        cluster3) echo "3 instances + HAProxy + PostgreSQL" ;;
        cluster1) echo "1 instance + PostgreSQL, no HAProxy" ;;
    esac
}
{
    echo
    echo "## Cluster (issue 17): adr-normal (5 × 400 WebSockets, 50 ev/s, ${DURATION} s) and votes (64 connections, ${VOTE_SECONDS} s)"
    echo
    echo "| setup | delivery p50 / p99 (ms) | deliveries/s | CPU per delivery: all (instances / HAProxy / PostgreSQL) | accepted votes/s | CPU per vote: all (instances / HAProxy / PostgreSQL) |"
    echo "|---|---|---|---|---|---|"
    for setup in $SETUPS; do
        d=${DELIVERY[$setup]:-} v=${VOTES[$setup]:-}
        printf '| %s | %s / %s | %s | %s µs (%s / %s / %s) | %s | %s µs (%s / %s / %s) |\n' "$(label "$setup")" \
            "$(field "$d" p50_ms)" "$(field "$d" p99_ms)" "$(field "$d" deliveries_per_s)" \
            "$(field "$d" total_us)" "$(field "$d" tally_us)" "$(field "$d" haproxy_us)" "$(field "$d" postgres_us)" \
            "$(field "$v" votes_per_s)" \
            "$(field "$v" total_us)" "$(field "$v" tally_us)" "$(field "$v" haproxy_us)" "$(field "$v" postgres_us)"
    done
} | tee -a "$LOG"

# Sizing from the cluster3 and cluster1 figures, under the assumptions printed with it. Every
# instance folds every event into its own copy of the sessions, so a vote costs the instance
# that takes it the cluster1 price, and each other instance a fold: per vote, over N instances,
# v1 + (N − 1) × f, with f = (v3 − v1) / 2 from the two rows (the same for PostgreSQL, which
# answers each instance's catch-up read). A delivery costs what it costs in cluster3.
if [[ -n ${DELIVERY[cluster3]:-} && -n ${VOTES[cluster3]:-} && -n ${VOTES[cluster1]:-} ]]; then
    d=${DELIVERY[cluster3]} v=${VOTES[cluster3]} v1=${VOTES[cluster1]}
    {
        echo
        echo "### Sizing from the cluster3 and cluster1 rows"
        echo
        echo "Assumptions: ADR normal per phone — each phone follows one session of 400 that publishes 10 events/s,"
        echo "so 10 deliveries/s per phone; every phone votes once within 10 s of a question opening (0.1 votes/s"
        echo "per phone at the peak, all sessions at once); an instance has 2 cores planned at 50 % (1 core-s/s)"
        echo "for headroom (reconnect storms, an instance lost), at least 2 instances; instance CPU per vote over"
        echo "N instances = v1 + (N − 1) × f (each other instance folds the vote), f from the two rows."
        echo
        echo "| phones | deliveries/s | votes/s (peak) | events to commit/s (votes + publications) | instances (2 cores, 50 %) | WebSockets per instance | instance core-s/s (delivery + votes) | PostgreSQL core-s/s |"
        echo "|---|---|---|---|---|---|---|---|"
        for phones in 10000 50000; do
            awk -v phones="$phones" -v dus="$(field "$d" tally_us)" -v v3="$(field "$v" tally_us)" -v v1="$(field "$v1" tally_us)" \
                -v p3="$(field "$v" postgres_us)" -v p1="$(field "$v1" postgres_us)" -v pgd="$(field "$d" postgres_us)" \
                -v frames="$(field "$d" frames)" -v pubs="$(field "$d" publications)" 'BEGIN {
                deliveries = phones * 10; votes = phones * 0.1
                sessions = int((phones + 399) / 400); publications = sessions * 5
                f = (v3 - v1) / 2; fp = (p3 - p1) / 2
                # The smallest N whose cores carry the load at 50 % (bounded search).
                for (n = 2; n < 200; n++) {
                    need = deliveries * dus / 1e6 + votes * (v1 + (n - 1) * f) / 1e6
                    if (need <= n) break
                }
                # PostgreSQL works per publication (commit, NOTIFY, each instance reading it back),
                # not per delivery: its share of adr-normal per publication, times publications.
                pg = votes * (p1 + (n - 1) * fp) / 1e6 + publications * (pgd * frames / pubs) / 1e6
                printf "| %d | %d | %d | %d | %d | %d | %.2f | %.2f |\n", phones, deliveries, votes, votes + publications * 2, n, phones / n, need, pg
            }'
        done
    } | tee -a "$LOG"
fi
echo "log: $LOG"
