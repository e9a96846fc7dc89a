"""The installable package: built by Appliance/build-deb.sh from a static release build; its
metadata and contents are right, and the binary extracted from it runs alone from another
path, serving the pages (embedded) and answering /readyz. Upgrading it over the previous
version keeps sessions, votes, the edited configuration and the operator password; a binary
given data from a newer Tally refuses it, untouched."""

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, Server, free_port

pytestmark = pytest.mark.skipif(os.environ.get("E2E_SKIP_DEB") == "1", reason="E2E_SKIP_DEB=1")


@pytest.fixture(scope="module")
def deb():
    out = tempfile.mkdtemp(prefix="tally-deb-")
    build = subprocess.run([os.path.join(ROOT, "Appliance", "build-deb.sh"), out], capture_output=True, text=True, timeout=3000)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-4000:]
    path = build.stdout.strip().splitlines()[-1]
    print(f"\n{os.path.basename(path)}: {os.path.getsize(path) / 1e6:.1f} MB")
    return path


def test_package_metadata_and_contents(deb):
    info = subprocess.run(["dpkg-deb", "--info", deb], capture_output=True, text=True, check=True).stdout
    for line in ("Package: tally", "Depends: libc6, libsqlite3-0, libavahi-client3, libqrencode4", "Recommends: avahi-daemon"):
        assert line in info
    for script in ("postinst", "prerm", "postrm", "conffiles"):
        assert script in info
    contents = subprocess.run(["dpkg-deb", "--contents", deb], capture_output=True, text=True, check=True).stdout
    for path in ("./usr/bin/tally", "./lib/systemd/system/tally.service", "./lib/systemd/system/tally@.service",
                 "./usr/share/doc/tally/examples/cluster/haproxy.cfg", "./etc/tally/tally.conf",
                 "./usr/share/doc/tally/README.md", "./usr/share/doc/tally/examples/tally-kiosk.service",
                 "./usr/share/doc/tally/examples/hostapd.conf", "./usr/share/doc/tally/examples/dnsmasq.conf"):
        assert path in contents, path
    # The cluster template is shipped for the operator to enable; the package starts only the appliance.
    postinst = subprocess.run(["dpkg-deb", "--info", deb, "postinst"], capture_output=True, text=True, check=True).stdout
    assert "tally@" not in postinst


def test_only_root_and_the_service_read_the_configuration(deb):
    # It may hold the operator password: 0640 root:root in the package, and the postinst tightens
    # an edited copy an older package left 0644; the unit hands the service a private copy.
    contents = subprocess.run(["dpkg-deb", "--contents", deb], capture_output=True, text=True, check=True).stdout
    conf = next(line for line in contents.splitlines() if line.endswith(" ./etc/tally/tally.conf"))
    assert conf.split()[:2] == ["-rw-r-----", "root/root"], conf
    postinst = subprocess.run(["dpkg-deb", "--info", deb, "postinst"], capture_output=True, text=True, check=True).stdout
    assert "chmod 0640 /etc/tally/tally.conf" in postinst
    unit = subprocess.run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -xO ./lib/systemd/system/tally.service', "sh", deb],
                          capture_output=True, text=True, check=True).stdout
    assert "LoadCredential=tally.conf:/etc/tally/tally.conf" in unit
    assert "--config ${CREDENTIALS_DIRECTORY}/tally.conf" in unit


def test_the_extracted_binary_runs_alone_and_serves_everything(deb):
    with tempfile.TemporaryDirectory() as root, tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as cwd:
        subprocess.run(["dpkg", "-x", deb, root], check=True)
        binary = os.path.join(root, "usr", "bin", "tally")
        sections = subprocess.run(["readelf", "-S", binary], capture_output=True, text=True).stdout
        assert ".symtab" not in sections, "stripped"
        libs = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
        assert "libswift" not in libs and "libFoundation" not in libs, "Swift runtime linked statically"
        server = Server(data)
        env_binary = os.environ.get("E2E_TALLY_BINARY")
        proc = subprocess.Popen([binary, "serve", "--host", "127.0.0.1", "--port", str(server.port), "--data-dir", data,
                                 "--no-mdns", "--ring-size", "8MiB", "--operator-password", "correct horse battery"],
                                cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if server.request("GET", "/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "did not become ready"
                time.sleep(0.1)
            status, page, _ = server.request("GET", "/")
            assert status == 200 and "Enter the code on the screen" in page
            assert server.request("GET", "/assets/tally.js")[0] == 200
            assert server.request("GET", "/api/v1/openapi.yaml")[0] == 200
            s = server.new_session()
            assert server.request("GET", f"/api/v1/sessions/{s['sessionId']}/qr.svg", token=s["presenterToken"])[0] == 200
        finally:
            proc.terminate()
            proc.wait(10)
        assert env_binary is None or env_binary != binary


# -- upgrades -----------------------------------------------------------------------------------

STATE_DIR = "/var/lib/private/tally"  # the unit's StateDirectory= under DynamicUser=
CONF = "/etc/tally/tally.conf"
CHOSEN = "the venue's own password"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def dpkg(*args):
    """dpkg as an operator runs it; waits out another dpkg/apt holding the lock (no timing asserted)."""
    deadline = time.monotonic() + 300
    while True:
        out = subprocess.run(["dpkg", *args], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if out.returncode == 0 or "lock" not in out.stderr or time.monotonic() > deadline:
            assert out.returncode == 0, f"dpkg {' '.join(args)}: {out.stdout}{out.stderr}"
            return out
        time.sleep(2)


def package_state():
    """dpkg's state of `tally` (installed, config-files, …) and its version; None when unknown or purged."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "tally"], capture_output=True, text=True)
    fields = out.stdout.split()
    if out.returncode != 0 or len(fields) < 3 or fields[2] == "not-installed":
        return None
    return fields[2], (fields[3] if len(fields) > 3 else "")


def installed_version():
    state = package_state()
    return state[1] if state and state[0] == "installed" else None


def previous_version_of(deb):
    """A lower version number for the same files: `0.1.0~previous` sorts before `0.1.0`."""
    current = subprocess.run(["dpkg-deb", "-f", deb, "Version"], capture_output=True, text=True, check=True).stdout.strip()
    previous = current + "~previous"
    assert subprocess.run(["dpkg", "--compare-versions", previous, "lt", current]).returncode == 0
    return current, previous


def snapshot_settled(server, sid, token):
    """The session as the presenter sees it, once the coalesced results of the last vote landed."""
    before, deadline = None, time.monotonic() + 5
    while time.monotonic() < deadline:
        snapshot = server.ok("GET", f"/api/v1/sessions/{sid}", token=token)
        if snapshot == before:
            return snapshot
        before = snapshot
        time.sleep(0.2)
    return before


def test_upgrade_keeps_data_configuration_and_password(deb):
    """`dpkg -i` of this package over the previous version, into this system, with data in place.

    There is no systemd here (/run/systemd/system is absent), so the maintainer scripts skip
    systemctl, as on a box being built in a chroot; the service is stood in for by starting the
    installed /usr/bin/tally by hand against the unit's state directory before and after. Both
    packages hold the same binary (the previous one is this build repacked under a lower version,
    `Appliance/build-deb.sh --repack`): what is tested here is what dpkg and the maintainer scripts
    do to the data, the conffile and the password; migrating an older database forward is the
    unit test `UpgradeTests`."""
    if os.geteuid() != 0:
        pytest.skip("installs a package: needs root")
    if package_state() is not None:
        pytest.skip(f"a tally package is already on this machine ({' '.join(package_state())}): not touching it")
    for path in (STATE_DIR, "/var/lib/tally", "/etc/tally"):
        if os.path.lexists(path):
            pytest.skip(f"{path} exists and is not this test's: not touching it")
    current, previous = previous_version_of(deb)
    work = tempfile.mkdtemp(prefix="tally-upgrade-")
    old_deb = subprocess.run([os.path.join(ROOT, "Appliance", "build-deb.sh"), "--repack", deb, previous, work],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    assert subprocess.run(["dpkg-deb", "-f", old_deb, "Version"], capture_output=True, text=True).stdout.strip() == previous
    made_private = not os.path.isdir("/var/lib/private")
    port = free_port()
    servers = []

    def installed_server():
        server = Server(STATE_DIR, port=port, password=None, binary="/usr/bin/tally")
        server.log_path = os.path.join(work, f"server-{len(servers)}.log")  # the state dir holds only data
        servers.append(server)
        return server.start()

    try:
        dpkg("-i", old_deb)
        assert installed_version() == previous
        os.makedirs(STATE_DIR, mode=0o700)  # as systemd makes it (and /var/lib/private, 0700)

        old = installed_server()
        code = old.ok("GET", "/api/v1/auth/setup-code")["setupCode"]  # first run: choose the password
        old.ok("POST", "/api/v1/auth/setup", {"password": CHOSEN, "setupCode": code})
        operator = old.ok("POST", "/api/v1/auth/login", {"password": CHOSEN})["token"]
        s = old.ok("POST", "/api/v1/sessions", {"title": "Before the upgrade"}, operator, expect=201)
        sid, presenter = s["sessionId"], s["presenterToken"]
        voters = [old.join(s["joinCode"]) for _ in range(5)]
        closed = old.poll(sid, presenter, options=["a", "b", "c"], open=True)
        for v, option in zip(voters, ["o1", "o2", "o2", "o3", "o2"]):
            assert old.vote(sid, closed["pollId"], v["participantToken"], [option])[0] == 201
        old.ok("POST", f"/api/v1/sessions/{sid}/polls/{closed['pollId']}/close", token=presenter)
        live = old.poll(sid, presenter, options=["x", "y"], open=True)
        for v in voters[:2]:
            assert old.vote(sid, live["pollId"], v["participantToken"], ["o2"])[0] == 201
        before = snapshot_settled(old, sid, presenter)
        assert old.stop() == 0

        # The venue's edits to the conffile: the room's Wi-Fi, which the display then shows.
        with open(CONF, "a") as f:
            f.write("\n# edited at the venue\nwifi-ssid = Upgrade Hall\nwifi-passphrase = a long enough passphrase\n")
        edited = open(CONF, "rb").read()
        data_before = {name: sha256(os.path.join(STATE_DIR, name)) for name in ("tally.sqlite", "events.ring")}

        upgrade = dpkg("-i", deb)
        assert installed_version() == current
        assert "Unpacking tally (" + current + ") over (" + previous + ")" in upgrade.stdout
        assert open(CONF, "rb").read() == edited, "the edited conffile is kept"
        assert stat.S_IMODE(os.stat(CONF).st_mode) == 0o640
        assert {name: sha256(os.path.join(STATE_DIR, name)) for name in data_before} == data_before, "dpkg left the data alone"

        new = installed_server()
        after = new.ok("GET", f"/api/v1/sessions/{sid}", token=presenter)  # the old presenter link still works
        assert after == before
        assert [c["count"] for c in after["polls"][0]["results"]["counts"]] == [1, 3, 1]
        assert [c["count"] for c in after["polls"][1]["results"]["counts"]] == [0, 2]
        assert after["openPollId"] == live["pollId"] and after["participantCount"] == 5
        assert new.ok("GET", "/api/v1/auth/status")["operatorPasswordSet"] is True
        assert new.request("POST", "/api/v1/auth/login", {"password": CHOSEN})[0] == 200, "the operator password is kept"
        assert new.request("POST", "/api/v1/auth/login", {"password": "not the password"})[0] == 401
        assert new.ok("GET", "/api/v1/wifi")["ssid"] == "Upgrade Hall", "the edited configuration is in force"
        # And it carries on: a vote on the live poll from a phone that joined before the upgrade.
        assert new.vote(sid, live["pollId"], voters[2]["participantToken"], ["o1"])[0] == 201
        assert new.stop() == 0

        dpkg("--purge", "tally")
        assert installed_version() is None
        assert not os.path.exists(STATE_DIR) and not os.path.exists(CONF), "purge, and only purge, removes data and configuration"
    finally:
        for server in servers:
            server.stop(signal.SIGKILL)
        if package_state() is not None:
            subprocess.run(["dpkg", "--purge", "tally"], capture_output=True)
        subprocess.run(["rm", "-rf", STATE_DIR, "/etc/tally", work])
        if made_private:
            os.rmdir("/var/lib/private")


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


@pytest.fixture(scope="module")
def packaged_binary(deb):
    """The binary the package installs, as the previous package would (both hold the same one)."""
    with tempfile.TemporaryDirectory(prefix="tally-deb-root-") as root:
        subprocess.run(["dpkg", "-x", deb, root], check=True)
        yield os.path.join(root, "usr", "bin", "tally")


def data_written_by_this_version(binary, data):
    server = Server(data, binary=binary)
    server.log_path = os.path.join(os.path.dirname(data), "server.log")
    server.start()
    s = server.new_session("Written before the downgrade")
    voter = server.join(s["joinCode"])
    poll = server.poll(s["sessionId"], s["presenterToken"], open=True)
    assert server.vote(s["sessionId"], poll["pollId"], voter["participantToken"], ["o1"])[0] == 201
    assert server.stop() == 0


def assert_refused_untouched(binary, data, found):
    files = {name: sha256(os.path.join(data, name)) for name in ("tally.sqlite", "events.ring")}
    serve = subprocess.run([binary, "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--data-dir", data,
                            "--no-mdns", "--ring-size", "8MiB"], capture_output=True, text=True, timeout=60)
    output = (serve.stdout + serve.stderr).strip()
    assert serve.returncode == 65, output  # EX_DATAERR: the unit's RestartPreventExitStatus=
    assert len(output.splitlines()) == 1, "one line, no stack trace: " + output
    for words in (f"cannot start: the data in {data} was written by a newer version of Tally", found,
                  "install that version of Tally or a newer one", f"Nothing in {data} has been changed"):
        assert words in output, output
    assert {name: sha256(os.path.join(data, name)) for name in files} == files, "not a byte changed"


def test_a_downgraded_binary_refuses_a_newer_database_untouched(packaged_binary):
    with tempfile.TemporaryDirectory() as parent:
        data = os.path.join(parent, "data")
        data_written_by_this_version(packaged_binary, data)
        # What a newer release's migration leaves behind: an identifier this binary never registered.
        db = sqlite3.connect(os.path.join(data, "tally.sqlite"))
        with db:
            db.execute("INSERT INTO grdb_migrations(identifier) VALUES ('v99: from a newer release')")
        db.close()
        assert_refused_untouched(packaged_binary, data, 'tally.sqlite has "v99: from a newer release"')
        # The offline commands open the database too (the ring is only the server's): same refusal.
        before = sha256(os.path.join(data, "tally.sqlite"))
        export = subprocess.run([packaged_binary, "export", "--session", "x", "--data-dir", data],
                                capture_output=True, text=True, timeout=60)
        assert export.returncode != 0 and "written by a newer version of Tally" in export.stderr, export.stderr
        assert sha256(os.path.join(data, "tally.sqlite")) == before


def test_a_downgraded_binary_refuses_a_newer_ring_untouched(packaged_binary):
    with tempfile.TemporaryDirectory() as parent:
        data = os.path.join(parent, "data")
        data_written_by_this_version(packaged_binary, data)
        # A well-formed version 2 header: the version field, and its CRC-32C made to check.
        ring = os.path.join(data, "events.ring")
        with open(ring, "r+b") as f:
            header = bytearray(f.read(60))
            header[8:12] = (2).to_bytes(4, "little")
            header[56:60] = crc32c(bytes(header[:56])).to_bytes(4, "little")
            f.seek(0)
            f.write(header)
        assert_refused_untouched(packaged_binary, data, "events.ring has format version 2; this version knows up to format version 1")
