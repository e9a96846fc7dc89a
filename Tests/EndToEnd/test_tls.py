"""TLS for venues that have a certificate: the real binary, with a CA and a server certificate
this test makes with `openssl`, serves REST, WebSocket (wss) and SSE over TLS, marks cookies
Secure, builds https join links, redirects plain HTTP from a second port, survives plain HTTP
on its TLS port, and refuses to start with a clear sentence when the key cannot be used."""

import http.client
import json
import os
import socket
import ssl
import subprocess
import time

import pytest

from conftest import BINARY, PASSWORD, SSEStream, Server, WSStream, free_port


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, and a certificate for 127.0.0.1 and localhost signed by it (EC keys: fast)."""
    d = str(tmp_path_factory.mktemp("pki"))
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=d)
    openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=Tally test CA", "-days", "2", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key", cwd=d)
    openssl("req", "-new", "-key", "server.key", "-subj", "/CN=tally.test", "-out", "server.csr", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "server.ext", "-out", "server.pem", cwd=d)
    # A key that belongs to no certificate here.
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "other.key", cwd=d)
    return d


def client_context(pki):
    context = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
    return context


class TLSServer(Server):
    """The harness's Server, spoken to over HTTPS with the test CA."""

    def __init__(self, data_dir, pki, **kwargs):
        self.context = client_context(pki)
        super().__init__(data_dir, **kwargs)

    def connection(self):
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.context)


@pytest.fixture(scope="module")
def appliance(pki, tmp_path_factory):
    redirect_port = free_port()
    server = TLSServer(
        str(tmp_path_factory.mktemp("tls")), pki,
        extra_args=["--tls-cert", os.path.join(pki, "server.pem"), "--tls-key", os.path.join(pki, "server.key"),
                    "--http-redirect-port", str(redirect_port), "--header-timeout", "2"])
    server.redirect_port = redirect_port
    server.start()
    yield server
    server.stop()


def test_rest_over_https_with_the_venue_ca(appliance):
    assert appliance.request("GET", "/readyz")[0] == 200
    created = appliance.new_session()
    status, snapshot, _ = appliance.request("GET", f"/api/v1/sessions/{created['sessionId']}", token=created["presenterToken"])
    assert status == 200
    # Join links (and so the QR code, drawn from the same URL) point at https.
    assert snapshot["joinUrl"].startswith("https://"), snapshot["joinUrl"]
    assert f":{appliance.port}/j/{created['joinCode']}" in snapshot["joinUrl"], snapshot["joinUrl"]
    # A client that does not trust the venue's CA is refused by its own TLS stack.
    with pytest.raises(ssl.SSLCertVerificationError):
        http.client.HTTPSConnection("127.0.0.1", appliance.port, timeout=5,
                                    context=ssl.create_default_context()).request("GET", "/healthz")


def test_cookies_are_secure(appliance):
    _, _, login = appliance.request("POST", "/api/v1/auth/login", {"password": PASSWORD})
    code = appliance.new_session()["joinCode"]
    _, _, joined = appliance.request("POST", "/api/v1/join", {"joinCode": code})
    for response in (login, joined):
        cookie = response.getheader("Set-Cookie")
        assert cookie and "; Secure" in cookie and "HttpOnly" in cookie, cookie


def test_wss_and_sse_over_tls_receive_events(appliance):
    created = appliance.new_session()
    sid, presenter = created["sessionId"], created["presenterToken"]
    ws = WSStream(appliance.events_url("wss", sessionId=sid, token=presenter), ssl=appliance.context)
    sse = SSEStream(appliance.port, f"/events?sessionId={sid}&token={presenter}", ssl=appliance.context)
    try:
        assert sse.status == 200
        time.sleep(0.3)  # both subscribed
        poll = appliance.poll(sid, presenter)["pollId"]
        for stream in (ws, sse):
            got = stream.collect(lambda e: e["eventType"] == "poll.created", timeout=5)
            assert got[-1]["payload"]["poll"]["id"] == poll
        # A participant's vote reaches both as results, in order, over TLS.
        participant = appliance.join(created["joinCode"])["participantToken"]
        appliance.ok("POST", f"/api/v1/sessions/{sid}/polls/{poll}/open", token=presenter)
        assert appliance.vote(sid, poll, participant, ["o1"])[0] == 201
        for stream in (ws, sse):
            got = stream.collect(lambda e: e["eventType"] == "poll.results" and e["payload"]["totalBallots"] == 1, timeout=5)
            assert got[-1]["payload"]["counts"][0] == {"optionId": "o1", "count": 1}
    finally:
        ws.close()
        sse.close()


def test_the_redirect_port_sends_plain_http_to_https(appliance):
    for method in ("GET", "POST"):
        conn = http.client.HTTPConnection("127.0.0.1", appliance.redirect_port, timeout=5)
        conn.request(method, "/j/K7QX2M?from=poster&x=1")
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.status == 308
        assert response.getheader("Location") == f"https://127.0.0.1:{appliance.port}/j/K7QX2M?from=poster&x=1"
    # The target answers.
    assert appliance.request("GET", "/j/K7QX2M?from=poster&x=1")[0] == 200


def test_plain_http_on_the_tls_port_does_not_hurt_the_server(appliance):
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", appliance.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                answer = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                answer = b""
            assert not answer.startswith(b"HTTP/1.1 200"), answer
    assert appliance.proc.poll() is None
    assert appliance.request("GET", "/readyz")[0] == 200


def test_a_connection_that_never_completes_the_handshake_is_cut_off(appliance):
    with socket.create_connection(("127.0.0.1", appliance.port), timeout=10) as s:
        start = time.monotonic()
        try:
            assert s.recv(4096) == b""  # closed by the server (header-timeout = 2 s)
        except ConnectionResetError:
            pass
        assert time.monotonic() - start < 6


def start_failure(tmp_path, *args):
    """Runs `tally serve` expecting it to refuse to start; returns (exit code, output)."""
    proc = subprocess.run(
        [BINARY, "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
         "--operator-password", PASSWORD, "--no-mdns", *args],
        capture_output=True, timeout=30)
    return proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace")


def test_an_unusable_key_or_certificate_stops_the_start_with_a_sentence(pki, tmp_path):
    cert, key = os.path.join(pki, "server.pem"), os.path.join(pki, "server.key")
    missing = str(tmp_path / "no-such.key")
    code, output = start_failure(tmp_path, "--tls-cert", cert, "--tls-key", missing)
    assert code != 0
    assert f"cannot read the TLS private key (tls-key) {missing}: No such file or directory" in output, output
    assert "Fatal error" not in output and "Stack dump" not in output, output

    code, output = start_failure(tmp_path, "--tls-cert", cert, "--tls-key", cert)
    assert code != 0 and "is not an unencrypted PEM private key" in output, output

    code, output = start_failure(tmp_path, "--tls-cert", key, "--tls-key", key)
    assert code != 0 and ("is not a PEM certificate" in output or "holds no PEM certificate" in output), output

    code, output = start_failure(tmp_path, "--tls-cert", cert, "--tls-key", os.path.join(pki, "other.key"))
    assert code != 0 and "does not fit the certificate" in output, output

    code, output = start_failure(tmp_path, "--tls-cert", cert)
    assert code != 0 and "tls-cert and tls-key go together" in output, output

    code, output = start_failure(tmp_path, "--http-redirect-port", "8081")
    assert code != 0 and "needs tls-cert and tls-key" in output, output
    # Nothing was created for a start that was refused.
    assert not os.path.exists(tmp_path / "data" / "events.ring")
