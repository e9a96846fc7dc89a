#!/usr/bin/env bash
# Real-time delivery measurements of issue 13, before/after a change, on the release build of
# this checkout, loopback only:
#
#   Appliance/bench/run.sh            # install nginx + nchan if needed, build, run everything
#   BUILD=0 Appliance/bench/run.sh    # reuse .build/release as it is
#   SCENARIOS="compare-nchan votes" Appliance/bench/run.sh
#
# Runs, one after the other (each starts and stops its own servers):
#   tally-load compare-nchan   ADR normal (5 × 400 WebSockets, 50 ev/s, 20 s) on nginx + nchan, then Tally (fsync)
#   tally-load idle            10,000 idle WebSockets: anonymous RSS per connection (target ≤ 12 KB)
#   tally-load storm           2,000 clients miss 500 events and reconnect at once (target ≤ 1 s)
#   tally-load votes           server CPU per durable vote vs. per GET /healthz (target ratio ≤ 1.5)
#   tally-load wordcloud       2,000 phones × 3 words within 10 s: every word counted, results ≤ 16 KiB, display p99
#   tally-load upvotes         Q&A: 2,000 phones upvote 50 questions (5 each) over 10 s: every upvote counted, display p99
#   tally-load quiz            2,000 players answer within 2 s, 20 displays: every answer scored, closesAt → leaderboard p99 (target ≤ 100 ms)
#   tally-load idle --peer nchan   the same 10,000 idle WebSockets on nginx + nchan, for reference
# The full output goes to $LOG (default /tmp/tally-bench-<time>.log). About 4 minutes of running.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d /opt/swift/usr/bin ]] && export PATH=/opt/swift/usr/bin:$PATH
SCENARIOS=${SCENARIOS:-compare-nchan idle storm votes wordcloud upvotes quiz idle-nchan}
LOG=${LOG:-/tmp/tally-bench-$(date +%Y%m%d-%H%M%S).log}

if [[ " $SCENARIOS " == *" compare-nchan "* ]] && ! Appliance/bench/nchan-peer.sh check >/dev/null 2>&1; then
    Appliance/bench/nchan-peer.sh install || {
        echo "nginx + nchan unavailable: running adr-normal on Tally alone" | tee -a "$LOG"
        SCENARIOS=${SCENARIOS/compare-nchan/adr-normal}
        SCENARIOS=${SCENARIOS/idle-nchan/}
    }
fi
if [[ ${BUILD:-1} != 0 ]]; then
    # The build shares the machine: keep it polite.
    nice -n 10 swift build -c release --product tally-load
    nice -n 10 swift build -c release --product tally
fi
{
    echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || true) $(git status --porcelain 2>/dev/null | grep -q . && echo '(uncommitted changes)')"
    echo "# $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$LOG"
for scenario in $SCENARIOS; do
    case $scenario in
        idle-nchan) args=(idle --peer nchan) ;;
        *) args=("$scenario") ;;
    esac
    echo "## tally-load ${args[*]}" | tee -a "$LOG"
    .build/release/tally-load "${args[@]}" 2>&1 | tee -a "$LOG"
    echo | tee -a "$LOG"
done
echo "log: $LOG"
