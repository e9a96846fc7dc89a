"""Cluster mode harness: a private PostgreSQL (initdb in a temporary directory, on a loopback
port, trust on loopback), several `tally serve --store postgresql://…` instances sharing it, and
HAProxy in front of them running the shipped Appliance/cluster/haproxy.cfg with this run's ports.

Everything is started and stopped by the tests themselves; nothing of the machine's own
PostgreSQL or HAProxy is used or touched (Debian's packages only provide the programs)."""

import csv
import glob
import io
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import PASSWORD, ROOT, Server, free_port

HAPROXY_CONFIG = os.path.join(ROOT, "Appliance", "cluster", "haproxy.cfg")
# Added to the backend for the tests only: which instance served a response (a stream's first),
# so a test can tell that roundrobin spread its streams and which ones a killed instance held.
INSTANCE_HEADER = "X-Tally-Instance"


def pg_bin():
    """Debian keeps PostgreSQL's server programs off the PATH, under the major version: the newest."""
    found = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.access(os.path.join(d, "initdb"), os.X_OK)]
    versions = sorted(found, key=lambda d: [int(p) for p in re.findall(r"\d+", os.path.basename(os.path.dirname(d)))])
    return versions[-1] if versions else None


def haproxy_bin():
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.access(p, os.X_OK)), None)


def missing():
    """Why the cluster tests cannot run on this machine, or None."""
    if pg_bin() is None:
        return "no PostgreSQL server programs (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql (Appliance/dev.sh does)"
    if haproxy_bin() is None:
        return "no haproxy: apt-get install haproxy (Appliance/dev.sh does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "PostgreSQL refuses to run as root and there is no postgres user to run it as"
    return None


def skip_unless_available():
    reason = missing()
    if reason:
        pytest.skip(reason)


def wait_for(condition, timeout, what):
    """Polls condition() until it is true (bounded): no test asserts how fast anything is."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class PostgreSQL:
    """A throwaway PostgreSQL server: its own data directory, port and socket directory."""

    def __init__(self):
        self.bin = pg_bin()
        self.dir = tempfile.mkdtemp(prefix="tally-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgresql.log")
        self.port = free_port()
        self.running = False
        # initdb and pg_ctl refuse root: as root, run them as the `postgres` user the package made.
        self.as_user = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            os.chown(self.dir, pwd.getpwnam("postgres").pw_uid, -1)

    def run(self, tool, *args, check=True):
        out = subprocess.run([*self.as_user, os.path.join(self.bin, tool), *args], capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {out.stdout}{out.stderr}\n{self.logs()[-3000:]}")
        return out

    def init(self):
        self.run("initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8", "--auth=trust")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            # Loopback only, a port of its own, its socket in its own directory (not /run/postgresql,
            # which may belong to the machine's PostgreSQL or not exist in a namespace).
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.dir}'\n"
                    # Enough for three instances' pools and the tests' own connections.
                    "max_connections = 200\n")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("host all all 127.0.0.1/32 trust\n")
        return self

    def start(self):
        self.run("pg_ctl", "start", "-D", self.data, "-l", self.log_path, "-w", "-t", "60")
        self.running = True
        return self

    def stop(self):
        """A fast shutdown: open connections are ended, as in an outage."""
        self.run("pg_ctl", "stop", "-D", self.data, "-m", "fast", "-w", "-t", "60")
        self.running = False

    def destroy(self):
        if self.running:
            self.run("pg_ctl", "stop", "-D", self.data, "-m", "immediate", "-w", check=False)
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def createdb(self, name):
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def url(self, database):
        # No password in the URL (Tally refuses one): trust on loopback.
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, database, statement):
        """Rows of a query, as lists of strings (psql's unaligned output)."""
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                              "-v", "ON_ERROR_STOP=1", "-AtF", "\t", "-c", statement], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"psql: {out.stderr}")
        return [line.split("\t") for line in out.stdout.splitlines()]

    def logs(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def haproxy_config(front_port, stats_port, backend_ports, log_path):
    """The shipped configuration with this run's ports, in the foreground, without what needs
    HAProxy's system set-up (chroot, user, the system log socket, the admin socket)."""
    with open(HAPROXY_CONFIG) as f:
        lines = f.read().splitlines()
    out, servers = [], 0
    for line in lines:
        stripped = line.strip()
        if re.match(r"(chroot|user|group|daemon|stats socket)\b", stripped):
            continue
        if stripped.startswith("log /dev/log"):
            line = "    log stdout format raw local0 info"
        elif stripped == "bind :80":
            line = f"    bind 127.0.0.1:{front_port}"
        elif stripped == "bind 127.0.0.1:8404":
            line = f"    bind 127.0.0.1:{stats_port}"
        elif stripped.startswith("maxconn "):
            # Sized for a hall, which needs file descriptors this machine may not allow (HAProxy
            # refuses to start then); a test needs a few hundred.
            line = "    maxconn 2000"
        elif stripped.startswith("balance "):
            line += f"\n    http-response set-header {INSTANCE_HEADER} %s"
        else:
            match = re.match(r"server (\S+) \S+:\d+(.*)$", stripped)
            if match:
                assert servers < len(backend_ports), "more server lines in haproxy.cfg than instances"
                line = f"    server {match.group(1)} 127.0.0.1:{backend_ports[servers]}{match.group(2)}"
                servers += 1
        out.append(line)
    assert servers == len(backend_ports), f"haproxy.cfg has {servers} server lines for {len(backend_ports)} instances"
    return "\n".join(out) + "\n"


class HAProxy:
    def __init__(self, backend_ports, directory):
        self.port = free_port()
        self.stats_port = free_port()
        self.backend_ports = list(backend_ports)
        self.config_path = os.path.join(directory, "haproxy.cfg")
        self.log_path = os.path.join(directory, "haproxy.log")
        with open(self.config_path, "w") as f:
            f.write(haproxy_config(self.port, self.stats_port, self.backend_ports, self.log_path))
        self.proc = None

    def start(self):
        check = subprocess.run([haproxy_bin(), "-c", "-q", "-f", self.config_path], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([haproxy_bin(), "-db", "-f", self.config_path], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or self.status() is not None, 20, "HAProxy's status page")
        assert self.proc.poll() is None, "haproxy exited: " + self.logs()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def status(self):
        """{server name: "UP" | "DOWN" | …} from the status page's CSV; None if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/;csv", timeout=5) as response:
                rows = list(csv.reader(io.StringIO(response.read().decode().lstrip("# "))))
        except OSError:
            return None
        header = rows[0]
        return {row[header.index("svname")]: row[header.index("status")].split(" ")[0]
                for row in rows[1:] if row and row[0] == "tally" and row[1] not in ("FRONTEND", "BACKEND")}

    def wait_servers(self, expected, timeout=30):
        """Until the health checks say expected ({name: "UP"/"DOWN"}): HAProxy's view, not a timing."""
        return wait_for(lambda: (self.status() or {}) == expected or None, timeout, f"HAProxy to see {expected}, it sees {self.status()}")

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


class Cluster:
    """Instances of `tally serve --store …` on one database, HAProxy in front (`front`)."""

    def __init__(self, postgresql, database, size=3, extra_args=(), password=PASSWORD):
        self.postgresql = postgresql
        self.database = database
        self.url = postgresql.createdb(database)
        self.dir = tempfile.mkdtemp(prefix="tally-cluster-")
        # Behind HAProxy on loopback: its X-Forwarded-For is believed.
        args = ["--store", self.url, "--trusted-proxies", "127.0.0.1", *extra_args]
        self.instances = []
        for i in range(size):
            data = os.path.join(self.dir, f"instance-{i + 1}")
            os.makedirs(data)
            self.instances.append(Server(data, extra_args=args, password=password))
        self.proxy = HAProxy([s.port for s in self.instances], self.dir)
        # Talks to HAProxy as a client would: the same helpers as for one appliance.
        self.front = Server(self.dir, port=self.proxy.port)
        self.names = {f"t{i + 1}": s for i, s in enumerate(self.instances)}

    def start(self):
        # The first one creates the schema; the others then find it.
        for server in self.instances:
            server.start()
        self.proxy.start()
        self.proxy.wait_servers({name: "UP" for name in self.names})
        return self

    def stop(self):
        self.proxy.stop()
        for server in self.instances:
            if server.proc is not None:  # started (a failed start leaves the rest unstarted)
                server.stop()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self):
        return "\n".join(f"--- {name} ---\n{s.logs()[-4000:]}" for name, s in self.names.items()) + \
            f"\n--- haproxy ---\n{self.proxy.logs()[-4000:]}\n--- postgresql ---\n{self.postgresql.logs()[-3000:]}"


def served_by(stream):
    """The HAProxy server name (t1, t2, …) a WSStream or SSEStream was served by."""
    if hasattr(stream, "response"):
        return stream.response.getheader(INSTANCE_HEADER)
    return stream._ws.response_headers.get(INSTANCE_HEADER)


def served_by_response(response):
    return response.getheader(INSTANCE_HEADER)
