#!/usr/bin/env bash
# Checks the systemd units without systemd running: `systemd-analyze verify` (any output is a
# failure — it exits 0 on unknown keys) and `systemd-analyze security` (exposure ≤ 2.0, "OK").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MAX_EXPOSURE="${MAX_EXPOSURE:-2.0}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A root with the binaries the units name, so verify can check ExecStart=.
mkdir -p "$work/usr/bin" "$work/bin" "$work/etc/systemd/system" "$work/usr/lib/systemd"
printf "#!/bin/sh\n" > "$work/bin/sh"; chmod +x "$work/bin/sh"
for bin in tally chromium; do printf '#!/bin/sh\n' > "$work/usr/bin/$bin"; chmod +x "$work/usr/bin/$bin"; done
cp -r /usr/lib/systemd/system "$work/usr/lib/systemd/system"
cp "$ROOT"/Systemd/*.service "$work/etc/systemd/system/"

status=0
secured=()
for unit in "$ROOT"/Systemd/*.service; do
    name="$(basename "$unit")"
    case "$name" in
        *@.service)
            instance="${name%@.service}@8081.service"
            out="$(systemd-analyze verify --man=no --root="$work" "$instance" 2>&1 || true)"
            # Noise from the host's own units is not ours; messages name the template's file.
            out="$(printf '%s\n' "$out" | grep -F -e "$name" -e "$instance" || true)"
            secured+=("$instance") ;;
        *)
            out="$(systemd-analyze verify --man=no --root="$work" "/etc/systemd/system/$name" 2>&1 || true)"
            out="$(printf '%s\n' "$out" | grep -F "$name" || true)" ;;
    esac
    if [ -n "$out" ]; then
        echo "verify $name: FAILED"; printf '%s\n' "$out"; status=1
    else
        echo "verify $name: ok"
    fi
done

# The services that serve the network (the kiosk is a local browser, not a server).
for unit in tally.service "${secured[@]}"; do
    line="$(systemd-analyze security --offline=yes --root="$work" "$unit" 2>&1 | grep -E 'Overall exposure level' || true)"
    echo "security $unit: ${line:-no result}"
    score="$(printf '%s' "$line" | sed -n 's/.*: \([0-9.]*\).*/\1/p')"
    if [ -z "$score" ] || ! awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
        echo "$unit: exposure ${score:-?} is above $MAX_EXPOSURE"; status=1
    fi
done
exit $status
