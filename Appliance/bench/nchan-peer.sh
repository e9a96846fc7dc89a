#!/usr/bin/env bash
# nginx + nchan, the reference peer of `tally-load --peer nchan` / `tally-load compare-nchan`.
#
#   Appliance/bench/nchan-peer.sh install   # Debian packages nginx + libnginx-mod-nchan (root)
#   Appliance/bench/nchan-peer.sh check     # prints the nginx and module paths tally-load uses
#
# tally-load itself writes the nginx.conf (2 workers, in-memory channels, 127.0.0.1 on a free
# high port, daemon off, pid file and logs in a temporary directory), starts nginx as its own
# child and stops it at the end. The system's nginx service is never started, enabled or
# configured: on a machine without a policy-rc.d this script installs a temporary one for the
# duration of apt-get so that the package's postinst cannot start the service, then removes it.
set -euo pipefail

NGINX=/usr/sbin/nginx
MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so

install() {
    if [[ -x $NGINX && -f $MODULE ]]; then
        echo "nginx + nchan already installed"
        return
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "install needs root (apt-get)" >&2
        exit 1
    fi
    local policy=/usr/sbin/policy-rc.d temporary=no
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        temporary=yes
        trap '[[ $temporary == yes ]] && rm -f '"$policy" EXIT
    fi
    apt-get update -qq -o DPkg::Lock::Timeout=300
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=300 nginx libnginx-mod-nchan
    check
}

check() {
    [[ -x $NGINX ]] || { echo "missing $NGINX" >&2; exit 1; }
    [[ -f $MODULE ]] || { echo "missing $MODULE" >&2; exit 1; }
    "$NGINX" -v
    dpkg-query -W -f='libnginx-mod-nchan ${Version}\n' libnginx-mod-nchan 2>/dev/null || true
    echo "module: $MODULE"
}

case "${1:-}" in
    install) install ;;
    check) check ;;
    *) echo "usage: $0 install|check" >&2; exit 64 ;;
esac
