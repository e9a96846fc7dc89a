"""The room's Wi-Fi (standalone mode): `wifi-ssid` / `wifi-passphrase`, GET /api/v1/wifi and
/api/v1/wifi.svg, and the display's idle screen showing a QR code phones join by scanning —
read back off the rendered screen with zbarimg, as a phone's camera would."""

import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import BINARY, Server

# Every character the WIFI: format escapes, in both fields.
SSID = 'Hall "A"; 2:1'
PASSPHRASE = 'p\\ss;w,rd:"x"'
TEXT = 'WIFI:T:WPA;S:Hall \\"A\\"\\; 2\\:1;P:p\\\\ss\\;w\\,rd\\:\\"x\\";;'


@pytest.fixture
def wifi_server(data_dir):
    s = Server(data_dir, extra_args=["--wifi-ssid", SSID, "--wifi-passphrase", PASSPHRASE]).start()
    yield s
    s.stop()


def test_without_a_network_the_routes_are_404(server):
    for path in ("/api/v1/wifi", "/api/v1/wifi.svg"):
        status, body, _ = server.request("GET", path)
        assert status == 404 and "wifi-ssid" in body["detail"], (path, status, body)


def test_the_network_is_served_to_anyone(wifi_server):
    status, body, resp = wifi_server.request("GET", "/api/v1/wifi")  # no credential at all
    assert status == 200, body
    assert body == {"ssid": SSID, "security": "WPA", "passphrase": PASSPHRASE, "text": TEXT, "qr": "/api/v1/wifi.svg"}
    status, svg, resp = wifi_server.request("GET", "/api/v1/wifi.svg")
    assert status == 200 and resp.getheader("Content-Type") == "image/svg+xml" and svg.startswith("<svg")


def test_an_open_network_has_no_passphrase(data_dir):
    s = Server(data_dir, env={"TALLY_WIFI_SSID": "Tally"}).start()
    try:
        body = s.ok("GET", "/api/v1/wifi")
        assert body == {"ssid": "Tally", "security": "nopass", "text": "WIFI:T:nopass;S:Tally;;", "qr": "/api/v1/wifi.svg"}
    finally:
        s.stop()


@pytest.mark.parametrize("args, message", [
    (["--wifi-ssid", "Tally", "--wifi-passphrase", "short"], "wifi-passphrase"),
    (["--wifi-passphrase", "long enough passphrase"], "needs wifi-ssid"),
    (["--wifi-ssid", "x" * 33], "wifi-ssid"),
])
def test_a_network_phones_cannot_join_refuses_to_start(data_dir, args, message):
    out = subprocess.run([BINARY, "serve", "--no-mdns", "--data-dir", data_dir, "--port", "0", *args],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and message in out.stderr, out.stderr


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM) or not shutil.which("zbarimg"), reason="needs chromium and zbarimg")
def test_the_idle_display_shows_a_qr_code_that_joins_the_network(wifi_server):
    from test_browser import Browsers, By, shot, text, wait

    s = wifi_server.new_session("Welcome")
    browsers = Browsers()
    try:
        display = browsers.open()
        display.get(f"http://127.0.0.1:{wifi_server.port}/display/{s['sessionId']}?token={s['displayToken']}")
        wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".wifi img") and d.find_elements(By.CSS_SELECTOR, ".join:not(.wifi) img"))
        qr = display.find_element(By.CSS_SELECTOR, ".wifi img")
        wait(display, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", qr) > 0)
        screen = text(display)
        assert SSID in screen and PASSPHRASE in screen and s["joinCode"] in screen
        shot(display, "display-idle-wifi-1080p.png")
        with tempfile.NamedTemporaryFile(suffix=".png") as png:
            png.write(qr.screenshot_as_png)
            png.flush()
            decoded = subprocess.run(["zbarimg", "--raw", "-q", png.name], capture_output=True, text=True, timeout=30)
        assert decoded.stdout.strip() == TEXT, decoded

        # A poll opens: the screen is about the poll; the Wi-Fi code is for the idle screen only.
        wifi_server.poll(s["sessionId"], s["presenterToken"], open=True)
        wait(display, lambda d: "Ship it?" in text(d) and not d.find_elements(By.CSS_SELECTOR, ".wifi"))
    finally:
        browsers.close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs chromium")
def test_without_a_network_the_idle_display_shows_only_the_join_code(server):
    from test_browser import Browsers, By, text, wait

    s = server.new_session("Welcome")
    browsers = Browsers()
    try:
        display = browsers.open()
        display.get(f"http://127.0.0.1:{server.port}/display/{s['sessionId']}?token={s['displayToken']}")
        wait(display, lambda d: d.find_elements(By.CSS_SELECTOR, ".join.big img"))
        assert not display.find_elements(By.CSS_SELECTOR, ".wifi") and "Wi-Fi" not in text(display)
    finally:
        browsers.close()
