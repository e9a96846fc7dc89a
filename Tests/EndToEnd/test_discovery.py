"""mDNS with the real avahi-daemon over a private D-Bus: advertise, collide, survive a daemon
restart, withdraw on shutdown, and find appliances with `tally discover`."""

import json
import subprocess
import tempfile
import time

import pytest

import avahi as avahi_helper
from conftest import BINARY, Server

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
