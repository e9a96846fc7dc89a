"""Behind a reverse proxy: only a peer in `trusted-proxies` may name the client in
X-Forwarded-For / Forwarded, and then each forwarded client has its own per-address budget;
from anyone else the headers are ignored. `/metrics` and first-run set-up are decided by the
real peer, and a forwarded request is never local — even when the proxy is on the box."""

import http.client
import json
import socket
import subprocess
import time

import pytest

from conftest import BINARY, Server, free_port

WRONG = "ZZZZZZ"


def post_join(server, code, headers=None, source="127.0.0.1"):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=(source, 0))
    conn.request("POST", "/api/v1/join", body=json.dumps({"joinCode": code}),
                 headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


def guess_until_locked_out(server, headers_for, source="127.0.0.1"):
    """Wrong join codes (each with the headers headers_for(i) gives) until the lockout answers 429."""
    for i in range(300):
        status = post_join(server, WRONG, headers_for(i), source)
        if status == 429:
            return i
        assert status == 404, status
    raise AssertionError("300 wrong join codes and no lockout")


@pytest.fixture(scope="module")
def trusting(tmp_path_factory):
    server = Server(str(tmp_path_factory.mktemp("proxy")), extra_args=["--trusted-proxies", "127.0.0.1, ::1"]).start()
    yield server
    server.stop()


def code_of(server):
    code = server.new_session()["joinCode"]
    assert code != WRONG
    return code


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(server):
    # No trusted proxies: each guess claims another address, and all count against the real one.
    code = code_of(server)
    guess_until_locked_out(server, lambda i: {"X-Forwarded-For": f"198.51.100.{i % 250 + 1}"})
    assert post_join(server, code, {"X-Forwarded-For": "203.0.113.77"}) == 429
    assert post_join(server, code, {"Forwarded": "for=203.0.113.78"}) == 429
    # Another real address is not affected.
    assert post_join(server, code, source="127.0.0.2") == 201


def test_a_peer_outside_the_trusted_list_cannot_name_a_client(trusting):
    code = code_of(trusting)
    guess_until_locked_out(trusting, lambda i: {"X-Forwarded-For": f"198.51.100.{i % 250 + 1}"}, source="127.0.0.3")
    assert post_join(trusting, code, {"X-Forwarded-For": "203.0.113.79"}, source="127.0.0.3") == 429
    # The trusted proxy, forwarding for some other client, is unaffected.
    assert post_join(trusting, code, {"X-Forwarded-For": "203.0.113.79"}) == 201


def test_a_trusted_proxy_gives_each_forwarded_client_its_own_budget(trusting):
    code = code_of(trusting)
    alice = {"X-Forwarded-For": "192.0.2.10"}
    guess_until_locked_out(trusting, lambda i: alice)
    assert post_join(trusting, code, alice) == 429
    # The same client named the RFC 7239 way is the same budget.
    assert post_join(trusting, code, {"Forwarded": 'for="192.0.2.10:5123";proto=https'}) == 429
    # Another client through the same proxy joins; so does the proxy's own address.
    assert post_join(trusting, code, {"X-Forwarded-For": "192.0.2.11"}) == 201
    assert post_join(trusting, code) == 201
    # Alice cannot escape by writing an address in front: the proxy appends what it saw, and
    # the right-most untrusted address is the client.
    assert post_join(trusting, code, {"X-Forwarded-For": "192.0.2.99, 192.0.2.10"}) == 429
    # Nor can anyone frame Alice by writing her address in front of their own.
    assert post_join(trusting, code, {"X-Forwarded-For": "192.0.2.10, 192.0.2.12"}) == 201


def test_metrics_are_decided_by_the_real_peer_and_never_for_a_forwarded_request(trusting, server):
    for appliance in (trusting, server):
        assert appliance.request("GET", "/metrics")[0] == 200  # a local scraper on the box
        for relayed in ({"X-Forwarded-For": "127.0.0.1"}, {"Forwarded": "for=127.0.0.1"}, {"X-Forwarded-For": "192.0.2.10"}):
            status, body, _ = appliance.request("GET", "/metrics", headers=relayed)
            assert status == 401, (relayed, status, body)
        # The operator may still read them through the proxy.
        assert appliance.request("GET", "/metrics", token=appliance.operator_token(), headers={"X-Forwarded-For": "192.0.2.10"})[0] == 200


def test_first_run_set_up_is_never_done_through_a_proxy(tmp_path):
    fresh = Server(str(tmp_path), password=None, extra_args=["--trusted-proxies", "127.0.0.1"]).start()
    try:
        for relayed in ({"X-Forwarded-For": "192.168.1.5"}, {"Forwarded": "for=127.0.0.1"}):
            status, body, _ = fresh.request("POST", "/api/v1/auth/setup", {"password": "a fresh password"}, headers=relayed)
            assert status == 403, (status, body)
        assert fresh.request("GET", "/api/v1/auth/status")[1]["operatorPasswordSet"] is False
        # The one-time set-up code is for the box's own screen: a direct loopback request gets
        # it, the same request relayed by a proxy on the box does not.
        assert fresh.request("GET", "/api/v1/auth/setup-code")[0] == 200
        for relayed in ({"X-Forwarded-For": "192.168.1.5"}, {"Forwarded": "for=127.0.0.1"}):
            assert fresh.request("GET", "/api/v1/auth/setup-code", headers=relayed)[0] == 403
    finally:
        fresh.stop()


def test_bad_trusted_proxies_refuse_to_start_with_the_reason(tmp_path):
    for value, why in (("10.0.0.1/8", "did you mean 10.0.0.0/8?"), ("10.0.0.0/33", "from 0 to 32"), ("proxy.lan", "not an IPv4 or IPv6")):
        proc = subprocess.run(
            [BINARY, "serve", "--port", str(free_port()), "--data-dir", str(tmp_path), "--no-mdns", "--trusted-proxies", f"::1, {value}"],
            capture_output=True, timeout=30)
        output = (proc.stdout + proc.stderr).decode(errors="replace")
        assert proc.returncode != 0 and "trusted-proxies" in output and why in output, output


def test_a_trusted_proxy_is_held_only_to_the_cap_in_all(tmp_path):
    """The clients behind a proxy cannot be told apart before HTTP is read: a trusted proxy is not
    held to the per-address connection cap (in flat mode, 32 would be the whole hall's)."""
    capped = Server(str(tmp_path), extra_args=["--trusted-proxies", "127.0.0.1", "--max-connections-per-ip", "3",
                                               "--max-connections", "12"]).start()
    held = []
    try:
        def connect(source):
            s = socket.create_connection(("127.0.0.1", capped.port), timeout=5, source_address=(source, 0))
            held.append(s)
            return s
        for _ in range(6):
            connect("127.0.0.1")
        time.sleep(0.3)
        probe = connect("127.0.0.1")
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 192.0.2.10\r\n\r\n")
        assert probe.recv(4096).startswith(b"HTTP/1.1 200")
        # Anyone else is still held to 3.
        for _ in range(3):
            connect("127.0.0.5")
        time.sleep(0.3)
        refused = connect("127.0.0.5").recv(4096).decode()
        assert refused.startswith("HTTP/1.1 503") and "too many connections from your address" in refused, refused
        # And the cap in all holds for the proxy too: 7 + 3 held (the refused one is gone), two places left.
        connect("127.0.0.1")
        connect("127.0.0.1")
        time.sleep(0.3)
        over = connect("127.0.0.1").recv(4096).decode()
        assert over.startswith("HTTP/1.1 503") and "connection limit" in over, over
    finally:
        for s in held:
            s.close()
        capped.stop()
