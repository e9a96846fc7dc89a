"""A private D-Bus system bus and avahi-daemon for the discovery tests.

Runs inside the test run's own network namespace (the suite is started under `unshare --net`
with only loopback up), so nothing is multicast on a real network. Each daemon gets a private
/run/avahi-daemon (a tmpfs in its own mount namespace), so it never meets another avahi."""

import os
import shutil
import signal
import subprocess
import time

CONF = """[server]
host-name=tally-test
use-ipv6=no
allow-interfaces=lo
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
"""


def available():
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("dbus-daemon", "avahi-daemon", "avahi-browse", "unshare"))


def on_loopback_only():
    import socket
    return [name for _, name in socket.if_nameindex()] == ["lo"]  # netlink: sees this namespace


class Avahi:
    def __init__(self, directory):
        self.dir = directory
        self.bus_path = os.path.join(directory, "bus")
        self.env = {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={self.bus_path}"}
        with open(os.path.join(directory, "avahi.conf"), "w") as f:
            f.write(CONF)
        self.bus = None
        self.daemon = None

    def start(self):
        self.bus = subprocess.Popen(["dbus-daemon", "--system", f"--address=unix:path={self.bus_path}", "--nofork",
                                     "--nopidfile", "--nosyslog"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.bus_path):
            if time.monotonic() > deadline:
                raise RuntimeError("dbus-daemon did not start")
            time.sleep(0.05)
        self.start_daemon()
        return self

    def start_daemon(self):
        log = open(os.path.join(self.dir, "avahi.log"), "ab")
        os.makedirs("/run/avahi-daemon", exist_ok=True)
        self.daemon = subprocess.Popen(
            ["unshare", "--mount", "sh", "-c",
             'mount -t tmpfs tmpfs /run/avahi-daemon && exec avahi-daemon --no-drop-root --no-chroot --no-rlimits '
             f'--no-proc-title -f {self.dir}/avahi.conf'],
            env={**os.environ, **self.env}, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while b"Server startup complete" not in open(os.path.join(self.dir, "avahi.log"), "rb").read():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("avahi-daemon did not start: " + open(os.path.join(self.dir, "avahi.log")).read())
            time.sleep(0.05)

    def kill_daemon(self):
        self.daemon.send_signal(signal.SIGKILL)
        self.daemon.wait()

    def browse(self, service="_tally._tcp"):
        """avahi-browse -rtp: resolved entries as (name, address, port, txt) tuples."""
        out = subprocess.run(["avahi-browse", "-rtp", service], env={**os.environ, **self.env},
                             capture_output=True, text=True, timeout=20).stdout
        found = []
        for line in out.splitlines():
            f = line.split(";")
            if f[0] == "=" and len(f) >= 10:
                found.append((f[3].replace("\\032", " ").replace("\\035", "#"), f[7], int(f[8]), f[9]))
        return sorted(set(found))

    def stop(self):
        for p in (self.daemon, self.bus):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
