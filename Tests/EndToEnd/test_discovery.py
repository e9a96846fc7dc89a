"""mDNS with the real avahi-daemon over a private D-Bus: advertise, collide, survive a daemon
restart, withdraw on shutdown, and find appliances with `tally discover`."""

import json
import os
import shlex
import subprocess
import tempfile
import time

import pytest

import avahi as avahi_helper
from conftest import BINARY, ROOT, Server

pytestmark = pytest.mark.skipif(
    not avahi_helper.available() or not avahi_helper.on_loopback_only(),
    reason="needs root, dbus-daemon and avahi-daemon, inside the suite's loopback-only network namespace")


@pytest.fixture
def avahi():
    with tempfile.TemporaryDirectory(prefix="tally-avahi-") as d:
        a = avahi_helper.Avahi(d).start()
        yield a
        a.stop()


def until(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def test_the_server_is_found_with_its_port_and_txt(avahi, data_dir):
    server = Server(data_dir, env=avahi.env, mdns=True, extra_args=["--name", "Tally main hall"]).start()
    try:
        found = until(lambda: avahi.browse())
        assert [(n, a, p) for n, a, p, _ in found] == [("Tally main hall", "127.0.0.1", server.port)]
        txt = found[0][3]
        for record in ('"txtvers=1"', '"api=/api/v1"', '"events=/events"', '"path=/display"', '"version=0.1.0"', '"id='):
            assert record in txt
        http = until(lambda: avahi.browse("_http._tcp"))
        assert http and http[0][2] == server.port and '"path=/"' in http[0][3]

        out = subprocess.run([BINARY, "discover", "--timeout", "2", "--json"], env={**__import__("os").environ, **avahi.env},
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        appliances = [json.loads(line) for line in out.stdout.splitlines()]
        assert appliances[0]["name"] == "Tally main hall" and appliances[0]["port"] == server.port
        assert appliances[0]["txt"]["path"] == "/display"
        url = subprocess.run([BINARY, "discover", "--timeout", "2", "--url"], env={**__import__("os").environ, **avahi.env},
                             capture_output=True, text=True, timeout=20).stdout.strip()
        assert url == f"http://127.0.0.1:{server.port}/display"
    finally:
        server.stop()


def test_two_appliances_with_one_name_both_appear(avahi):
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        a = Server(d1, env=avahi.env, mdns=True, extra_args=["--name", "Tally"]).start()
        until(lambda: avahi.browse())
        b = Server(d2, env=avahi.env, mdns=True, extra_args=["--name", "Tally"]).start()
        try:
            found = until(lambda: len(avahi.browse()) == 2 and avahi.browse())
            assert {n for n, *_ in found} == {"Tally", "Tally #2"}
            assert {p for _, _, p, _ in found} == {a.port, b.port}
            assert "using an alternative" in b.logs()
        finally:
            a.stop()
            b.stop()


def test_a_restarted_daemon_gets_the_advertisement_back(avahi, data_dir):
    server = Server(data_dir, env=avahi.env, mdns=True, extra_args=["--name", "Phoenix"]).start()
    try:
        assert until(lambda: avahi.browse())
        avahi.kill_daemon()
        avahi.start_daemon()
        started = time.monotonic()
        assert until(lambda: avahi.browse(), timeout=8), server.logs()
        assert time.monotonic() - started < 5, "re-published within 5 s"
        assert "avahi-daemon went away" in server.logs()
    finally:
        server.stop()


def test_graceful_shutdown_withdraws_the_advertisement(avahi, data_dir):
    server = Server(data_dir, env=avahi.env, mdns=True, extra_args=["--name", "Leaving"]).start()
    assert until(lambda: avahi.browse())
    assert server.stop() == 0
    assert until(lambda: avahi.browse() == [], timeout=5) == [] or avahi.browse() == []
    assert "withdrawn" in server.logs()


def test_without_any_daemon_the_server_still_serves(data_dir):
    server = Server(data_dir, env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"}, mdns=True).start()
    try:
        assert server.request("GET", "/readyz")[0] == 200
        s = server.new_session()
        assert server.join(s["joinCode"])["sessionId"] == s["sessionId"]
        time.sleep(0.5)
        time.sleep(2)  # it keeps retrying in the background…
        assert server.logs().count("mDNS: not advertising") == 1, "…but says so once"
    finally:
        server.stop()


# -- discovery you can trust: anyone on the Wi-Fi can advertise _tally._tcp ----------------------

def discover(avahi, *args):
    return subprocess.run([BINARY, "discover", "--timeout", "2", *args], env={**os.environ, **avahi.env},
                          capture_output=True, text=True, timeout=30)


def listed(avahi, *args):
    out = discover(avahi, "--json", *args)
    assert out.returncode == 0, (out.returncode, out.stderr)
    return {a["name"]: a for a in map(json.loads, out.stdout.splitlines())}


class Publish:
    """`avahi-publish -s`: a service advertised by something that is not Tally (a phone)."""

    def __init__(self, avahi, name, port, *txt):
        self.proc = subprocess.Popen(["avahi-publish", "-s", name, "_tally._tcp", str(port), *txt],
                                     env={**os.environ, **avahi.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


def names(avahi):
    return {n for n, *_ in avahi.browse()}


@pytest.fixture
def appliance(avahi, data_dir):
    server = Server(data_dir, env=avahi.env, mdns=True, extra_args=["--name", "Tally main hall"]).start()
    assert until(lambda: "Tally main hall" in names(avahi))
    server.id = listed(avahi)["Tally main hall"]["id"]
    yield server
    server.stop()


def test_malformed_and_impostor_advertisements_are_listed_and_the_pinned_kiosk_ignores_them(avahi, appliance):
    real_url = f"http://127.0.0.1:{appliance.port}/display"
    # A TXT entry of `=` made `tally discover` trap; with it: an empty key, a value that is not
    # UTF-8, and a path that would move the URL to another host.
    broken = Publish(avahi, "Broken", 9, "=", "==x", b"id=\xff\xfe", "path=@evil.example/")
    # A phone named to sort first, with an id of its own.
    impostor = Publish(avahi, "AAA", 9999, "txtvers=1", "id=impostor00000001", "path=/display")
    try:
        assert until(lambda: names(avahi) == {"Tally main hall", "Broken", "AAA"}), avahi.browse()

        found = listed(avahi)
        assert set(found) == {"Tally main hall", "Broken", "AAA"}, "every advertiser is listed"
        assert found["Tally main hall"]["id"] == appliance.id and len(appliance.id) == 16
        assert found["AAA"]["id"] == "impostor00000001"
        assert "id" not in found["Broken"] and found["Broken"]["url"] == "http://127.0.0.1:9/"
        assert not any(a["contested"] for a in found.values())
        text = discover(avahi)
        assert text.returncode == 0 and "Broken\tid=(none)" in text.stdout and f"id={appliance.id}" in text.stdout, text

        # Unpinned, --url does not pick "AAA" because it sorts first: it says who answers.
        unpinned = discover(avahi, "--url")
        assert unpinned.returncode == 3 and unpinned.stdout == "", unpinned
        assert "AAA" in unpinned.stderr and "Tally main hall" in unpinned.stderr and "--appliance-id" in unpinned.stderr

        # Pinned, every other advertiser is ignored.
        pinned = discover(avahi, "--url", "--appliance-id", appliance.id)
        assert (pinned.returncode, pinned.stdout.strip()) == (0, real_url), pinned
        assert set(listed(avahi, "--appliance-id", appliance.id)) == {"Tally main hall"}
        assert discover(avahi, "--url", "--appliance-id", "someoneelse000").returncode == 1
        assert discover(avahi, "--url", "--appliance-id", "not an id").returncode == 64, "refused as a usage error"
    finally:
        broken.stop()
        impostor.stop()


def test_an_id_advertised_by_two_hosts_is_an_impostor_and_the_kiosk_shows_neither(avahi, appliance):
    copy = Publish(avahi, "AAA", 9999, "txtvers=1", f"id={appliance.id}", "path=/display")
    try:
        assert until(lambda: names(avahi) == {"Tally main hall", "AAA"}), avahi.browse()
        found = listed(avahi)
        assert found["AAA"]["id"] == found["Tally main hall"]["id"] == appliance.id
        assert found["AAA"]["contested"] and found["Tally main hall"]["contested"]
        assert "IMPOSTOR?" in discover(avahi).stdout

        pinned = discover(avahi, "--url", "--appliance-id", appliance.id)
        assert pinned.returncode == 4 and pinned.stdout == "", pinned
        assert "impostor" in pinned.stderr and "AAA" in pinned.stderr and "Tally main hall" in pinned.stderr
    finally:
        copy.stop()
    # The impostor leaves: the kiosk's next try opens the real appliance.
    assert until(lambda: names(avahi) == {"Tally main hall"})
    pinned = discover(avahi, "--url", "--appliance-id", appliance.id)
    assert (pinned.returncode, pinned.stdout.strip()) == (0, f"http://127.0.0.1:{appliance.port}/display"), pinned


def test_the_appliance_id_survives_a_restart(avahi, appliance):
    appliance.stop()
    assert until(lambda: names(avahi) == set())
    appliance.start()
    assert until(lambda: "Tally main hall" in names(avahi))
    assert listed(avahi)["Tally main hall"]["id"] == appliance.id


def kiosk_script():
    """The shell script of Systemd/tally-kiosk.service's ExecStart=, as systemd hands it to sh
    (continuation lines joined, `$$` → `$`), with this build's tally and `echo` for chromium."""
    with open(os.path.join(ROOT, "Systemd", "tally-kiosk.service")) as f:
        unit = f.read().replace("\\\n", " ")
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))[len("ExecStart="):]
    sh, dash_c, script = shlex.split(exec_start)
    assert (sh, dash_c) == ("/bin/sh", "-c")
    return script.replace("$$", "$").replace("/usr/bin/tally", BINARY).replace("exec /usr/bin/chromium", "exec echo chromium")


def test_the_kiosk_unit_opens_its_pinned_appliance_and_no_other(avahi, appliance):
    impostor = Publish(avahi, "AAA", 9999, "txtvers=1", "id=impostor00000001", "path=/display")
    try:
        assert until(lambda: names(avahi) == {"Tally main hall", "AAA"})
        env = {**os.environ, **avahi.env}
        pinned = subprocess.run(["sh", "-c", kiosk_script()], env={**env, "TALLY_KIOSK_APPLIANCE_ID": appliance.id},
                                capture_output=True, text=True, timeout=60)
        assert pinned.stdout.split()[-1] == f"http://127.0.0.1:{appliance.port}/display", pinned
        assert pinned.stdout.startswith("chromium --kiosk")
        # Unpinned with two answering, it waits (and says why) instead of opening either.
        with pytest.raises(subprocess.TimeoutExpired) as waited:
            subprocess.run(["sh", "-c", kiosk_script()], env={**env, "TALLY_KIOSK_APPLIANCE_ID": ""},
                           capture_output=True, text=True, timeout=9)
        assert b"appliances answer" in (waited.value.stderr or b"") and not waited.value.stdout
    finally:
        impostor.stop()
