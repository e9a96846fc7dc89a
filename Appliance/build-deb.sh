#!/usr/bin/env bash
# Builds tally_<version>_<arch>.deb: a release build with the Swift runtime linked statically,
# stripped, with the systemd units, the example configuration and the standalone Wi-Fi examples.
#
#   Appliance/build-deb.sh [--version VERSION] [OUTPUT_DIR]      (default: ./artifacts)
#
# The package version is the binary's (`tally --version`) unless --version (or TALLY_DEB_VERSION)
# names another, e.g. a lower one to try an upgrade from, built from the same sources.
# `--repack DEB VERSION [OUTPUT_DIR]` makes that lower-version package from a built one in seconds,
# without a second release build: the same files under another Version (what the upgrade test does).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${TALLY_DEB_VERSION:-}"
if [ "${1:-}" = --repack ]; then
    [ $# -ge 3 ] || { echo "usage: $0 --repack DEB VERSION [OUTPUT_DIR]" >&2; exit 2; }
    SOURCE="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; VERSION="$3"
    dpkg --validate-version "$VERSION" || { echo "not a Debian version: $VERSION" >&2; exit 2; }
    OUT="$(mkdir -p "${4:-$(dirname "$SOURCE")}" && cd "${4:-$(dirname "$SOURCE")}" && pwd)"
    STAGE="$(mktemp -d)"
    trap 'rm -rf "$STAGE"' EXIT
    dpkg-deb -R "$SOURCE" "$STAGE/pkg"
    sed -i "s/^Version: .*/Version: ${VERSION}/" "$STAGE/pkg/DEBIAN/control"
    DEB="$OUT/tally_${VERSION}_$(dpkg-deb -f "$SOURCE" Architecture).deb"
    dpkg-deb --root-owner-group --build "$STAGE/pkg" "$DEB" >/dev/null
    echo "$DEB"
    exit 0
fi
if [ "${1:-}" = --version ]; then
    [ $# -ge 2 ] || { echo "usage: $0 [--version VERSION] [OUTPUT_DIR]" >&2; exit 2; }
    VERSION="$2"; shift 2
fi
# Checked before the long build, not by dpkg-deb at its end.
if [ -n "$VERSION" ] && ! dpkg --validate-version "$VERSION"; then echo "not a Debian version: $VERSION" >&2; exit 2; fi
OUT="$(mkdir -p "${1:-$ROOT/artifacts}" && cd "${1:-$ROOT/artifacts}" && pwd)"
cd "$ROOT"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

say "release build with --static-swift-stdlib (about 5 minutes the first time)"
swift build -c release --static-swift-stdlib --product tally --scratch-path "$ROOT/.build-release-static"
BIN="$("$ROOT/.build-release-static/release/tally" --version >/dev/null && echo "$ROOT/.build-release-static/release/tally")"
VERSION="${VERSION:-$("$BIN" --version)}"
ARCH="$(dpkg --print-architecture)"

STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
PKG="$STAGE/tally_${VERSION}_${ARCH}"
install -d "$PKG/DEBIAN" "$PKG/usr/bin" "$PKG/lib/systemd/system" "$PKG/etc/tally" \
    "$PKG/usr/share/doc/tally/examples"
install -m 0755 "$BIN" "$PKG/usr/bin/tally"
strip --strip-unneeded "$PKG/usr/bin/tally"
install -m 0644 Systemd/tally.service "$PKG/lib/systemd/system/tally.service"
# Cluster mode (several instances sharing PostgreSQL): installed, never enabled by the package;
# the operator enables tally@8081 … (Appliance/cluster/README.md, shipped with the examples).
install -m 0644 Systemd/tally@.service "$PKG/lib/systemd/system/tally@.service"
# 0640 root:root: it may hold the operator password and the Wi-Fi passphrase. Only root reads
# it; the unit passes the service a copy (LoadCredential=).
install -m 0640 Appliance/etc/tally.conf "$PKG/etc/tally/tally.conf"
install -m 0644 README.md ARCHITECTURE.md "$PKG/usr/share/doc/tally/"
install -m 0644 Systemd/tally-kiosk.service Appliance/standalone/hostapd.conf Appliance/standalone/dnsmasq.conf \
    "$PKG/usr/share/doc/tally/examples/"
install -d "$PKG/usr/share/doc/tally/examples/cluster"
install -m 0644 Appliance/cluster/haproxy.cfg Appliance/cluster/README.md "$PKG/usr/share/doc/tally/examples/cluster/"

# Shared libraries the binary needs, as Debian package names.
DEPENDS="libc6, libsqlite3-0, libavahi-client3, libqrencode4, libstdc++6, zlib1g"
SIZE_KB="$(du -sk "$PKG/usr" | cut -f1)"
cat > "$PKG/DEBIAN/control" <<CONTROL
Package: tally
Version: ${VERSION}
Architecture: ${ARCH}
Maintainer: Tally developers <tally@localhost>
Installed-Size: ${SIZE_KB}
Depends: ${DEPENDS}
Recommends: avahi-daemon
Suggests: hostapd, dnsmasq, chromium
Section: net
Priority: optional
Description: live event polling appliance
 Tally serves live polls to a room full of phones from a small box at the venue:
 participants join with a code or a QR code, presenters run polls, big screens show
 live results over WebSocket or Server-Sent Events. No internet needed. Advertises
 itself over mDNS; keeps every acknowledged vote across crashes and power cuts.
CONTROL
echo "/etc/tally/tally.conf" > "$PKG/DEBIAN/conffiles"
# Upgrades (dpkg -i of a newer package over an older one): the old service keeps running while
# dpkg unpacks (prerm upgrade stops nothing), the files are replaced, then postinst configure
# <old-version> restarts it once on the new binary, which migrates the data forward at start.
# The data directory is touched only by purge; the edited conffile is kept by dpkg.
cat > "$PKG/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
# An edited conffile from an older package is kept as it was (0644 then): it may hold the
# operator password and the Wi-Fi passphrase, so only root may read it.
if [ "$1" = configure ] && [ -f /etc/tally/tally.conf ]; then
    chmod 0640 /etc/tally/tally.conf
fi
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    # Enabled on the first install only: an operator who disabled the service keeps that choice
    # through upgrades (an upgrade then restarts nothing that was not running).
    if [ -z "$2" ]; then systemctl enable tally.service >/dev/null; fi
    if [ -n "$2" ] && ! systemctl is-enabled --quiet tally.service && ! systemctl is-active --quiet tally.service; then
        echo "Tally upgraded from $2; the service stays disabled, as it was."
        exit 0
    fi
    # One restart, after the new files are in place: an upgrade's only downtime. A failed start
    # (e.g. data from a newer Tally after a downgrade) leaves the package installed and says where
    # the reason is, rather than failing dpkg half-way.
    if systemctl restart tally.service; then
        if [ -n "$2" ]; then
            echo "Tally restarted on the new version (was $2): sessions, votes, settings and the operator password are kept."
        else
            echo "Tally is running. Open http://$(hostname).local/presenter to choose the operator password."
        fi
    else
        echo "Tally did not start: see journalctl -u tally.service (data written by a newer Tally is refused, untouched)." >&2
    fi
fi
exit 0
SCRIPT
cat > "$PKG/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
# Only a removal stops the service. On upgrade it keeps serving until the new postinst restarts
# it, so an upgrade is one restart, never a stop whose start is forgotten.
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl stop tally.service || true
    systemctl disable tally.service >/dev/null || true
    # Cluster instances the operator enabled (tally@8081 …): their binary is going away too.
    for unit in $(systemctl list-units --all --plain --no-legend 'tally@*.service' | awk '{print $1}'); do
        systemctl stop "$unit" || true
    done
    for unit in $(systemctl list-unit-files --plain --no-legend 'tally@*.service' | awk '$2 == "enabled" {print $1}'); do
        systemctl disable "$unit" >/dev/null || true
    done
fi
exit 0
SCRIPT
cat > "$PKG/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
# Sessions, votes, the secret and the operator password stay in /var/lib/private/tally on
# remove and upgrade; only purge deletes them.
if [ "$1" = purge ]; then rm -rf /var/lib/private/tally /var/lib/tally /var/lib/private/tally-cluster /var/lib/tally-cluster; fi
exit 0
SCRIPT
chmod 0755 "$PKG/DEBIAN/postinst" "$PKG/DEBIAN/prerm" "$PKG/DEBIAN/postrm"

DEB="$OUT/tally_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group --build "$PKG" "$DEB" >/dev/null
say "built $DEB ($(du -h "$DEB" | cut -f1); binary $(du -h "$PKG/usr/bin/tally" | cut -f1) stripped)"
echo "$DEB"
