#!/usr/bin/env bash
# Tally developer entry point.
#
#   Appliance/dev.sh run  [serve options]   install what is missing, build (release), run the server
#   Appliance/dev.sh test                   install what is missing, build, run every test suite
#   Appliance/dev.sh build [debug|release]  just build
#
# Works on a fresh Debian 12 / Ubuntu 22.04+ machine with Swift 6.1 or later on the PATH.
# Installs Debian packages with apt-get when they are missing (as root, or through sudo).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian packages the build and the tests need.
BUILD_PACKAGES=(libsqlite3-dev libqrencode-dev libavahi-client-dev pkg-config)
TEST_PACKAGES=(python3 python3-pytest python3-websockets python3-yaml python3-selenium python3-venv chromium chromium-driver
    dbus avahi-daemon avahi-utils iproute2 util-linux procps zbar-tools openssl
    postgresql haproxy)  # cluster mode: the tests make their own PostgreSQL (initdb) and HAProxy
# The API fuzzer, from PyPI, into a virtualenv of its own (ignored by git like the build folders).
SCHEMATHESIS=schemathesis==4.32.5
FUZZ_VENV="$ROOT/.build-venv"

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
    # Never let a package's maintainer script start a daemon on this machine's real network.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
    fi
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

need_swift() {
    if ! command -v swift >/dev/null; then
        [ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
    fi
    command -v swift >/dev/null || die "Swift 6.1 or later is needed (https://www.swift.org/install/linux/); put 'swift' on the PATH and retry"
    local version
    version="$(swift --version 2>/dev/null | sed -n 's/.*Swift version \([0-9]*\.[0-9]*\).*/\1/p' | head -1)"
    case "$version" in
        6.[1-9]*|6.[1-9][0-9]*|[7-9].*) ;;
        *) die "Swift 6.1 or later is needed, found '${version:-unknown}'" ;;
    esac
}

build() {
    local configuration="${1:-debug}"
    need_swift
    apt_install "${BUILD_PACKAGES[@]}"
    say "building ($configuration) — a first build takes about 5 minutes"
    swift build -c "$configuration" --product tally
}

cmd_run() {
    build release
    local bin
    bin="$(swift build -c release --show-bin-path)/tally"
    say "starting Tally (Ctrl-C to stop)"
    exec "$bin" serve "$@"
}

install_fuzzer() {
    if [ -x "$FUZZ_VENV/bin/st" ] && "$FUZZ_VENV/bin/pip" show -q "${SCHEMATHESIS%%==*}" 2>/dev/null \
        && [ "$("$FUZZ_VENV/bin/pip" show "${SCHEMATHESIS%%==*}" | sed -n 's/^Version: //p')" = "${SCHEMATHESIS##*==}" ]; then
        return 0
    fi
    say "installing $SCHEMATHESIS into $FUZZ_VENV (the API fuzzer)"
    rm -rf "$FUZZ_VENV"
    /usr/bin/python3 -m venv "$FUZZ_VENV"
    "$FUZZ_VENV/bin/pip" install -q --disable-pip-version-check "$SCHEMATHESIS"
}

cmd_test() {
    need_swift
    apt_install "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    install_fuzzer
    export E2E_SCHEMATHESIS="$FUZZ_VENV/bin/st"
    say "style: the code follows .swift-format (swift format lint --strict)"
    swift format lint --strict --recursive Sources Tests Package.swift
    say "building the server and the unit tests"
    swift build --build-tests
    say "unit tests (domain, event log, real-time, server, discovery)"
    swift test --skip-build
    say "end-to-end tests against the real binary (and headless Chromium)"
    export E2E_TALLY_BINARY
    E2E_TALLY_BINARY="$(swift build --show-bin-path)/tally"
    local pytest=(/usr/bin/python3 -m pytest -q -p no:cacheprovider "$ROOT/Tests/EndToEnd")
    if [ "$(id -u)" -eq 0 ] && unshare --net true 2>/dev/null; then
        # A private network namespace with only loopback: the server, the load and the browser
        # can reach nothing but each other.
        unshare --net sh -c 'ip link set lo up && exec "$@"' sh "${pytest[@]}"
    else
        "${pytest[@]}"
    fi
}

case "${1:-}" in
    run) shift; cmd_run "$@" ;;
    test) shift; cmd_test "$@" ;;
    build) shift; build "${1:-debug}" ;;
    *) die "usage: Appliance/dev.sh run [serve options] | test | build [debug|release]" ;;
esac
