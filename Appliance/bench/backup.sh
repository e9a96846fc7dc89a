#!/usr/bin/env bash
# What a backup costs a running box, on the release build of this checkout, loopback only:
#
#   Appliance/bench/backup.sh            # build, then measure
#   BUILD=0 Appliance/bench/backup.sh    # reuse .build/release as it is
#
# 1. `tally-load votes` (2,000 participants, keep-alive connections, durable votes) on a quiet box;
# 2. the same again while `tally backup` runs back to back beside it: vote p50/p99 and the
#    server's CPU per vote, side by side with (1), and each backup's time and size;
# 3. `tally restore` of the last archive into an empty directory: its time, and the counts it reports.
# Bounded: two 20-second runs and the backups inside the second. Output also goes to $LOG.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d /opt/swift/usr/bin ]] && export PATH=/opt/swift/usr/bin:$PATH
LOG=${LOG:-/tmp/tally-backup-bench-$(date +%Y%m%d-%H%M%S).log}
DURATION=${DURATION:-20}
if [[ ${BUILD:-1} != 0 ]]; then
    nice -n 10 swift build -c release --product tally-load
    nice -n 10 swift build -c release --product tally
fi
WORK=$(mktemp -d /tmp/tally-backup-bench.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.build/release/tally serve --data-dir "$WORK/data" --port "$PORT" --host 127.0.0.1 --no-mdns \
    --operator-password load-test-password --rate-limits no --ring-size 512MiB --log-level warning \
    >"$WORK/server.log" 2>&1 &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

{
    echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || true)"
    echo "# $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "## votes, no backup"
} | tee -a "$LOG"
.build/release/tally-load votes --port "$PORT" --pid "$SERVER" --duration "$DURATION" 2>&1 | tee -a "$LOG"

echo "## votes while tally backup runs back to back" | tee -a "$LOG"
(
    end=$((SECONDS + DURATION + 5))
    n=0
    while ((SECONDS < end && n < 200)); do
        start=$(date +%s%N)
        .build/release/tally backup --to "$WORK/backup.tar" --data-dir "$WORK/data" >"$WORK/backup.out"
        printf '%d ms  %s\n' $((($(date +%s%N) - start) / 1000000)) "$(cat "$WORK/backup.out")" >>"$WORK/backups.txt"
        n=$((n + 1))
    done
) &
BACKUPS=$!
.build/release/tally-load votes --port "$PORT" --pid "$SERVER" --duration "$DURATION" 2>&1 | tee -a "$LOG"
wait "$BACKUPS"
{
    echo "backups taken during the run: $(wc -l <"$WORK/backups.txt")"
    echo "first: $(head -1 "$WORK/backups.txt")"
    echo "last:  $(tail -1 "$WORK/backups.txt")"
    echo "## restore of the last archive into an empty directory"
    start=$(date +%s%N)
    .build/release/tally restore "$WORK/backup.tar" --data-dir "$WORK/restored" | head -1
    echo "restore took $((($(date +%s%N) - start) / 1000000)) ms"
} 2>&1 | tee -a "$LOG"
echo "log: $LOG"
