"""The installable package: built by Appliance/build-deb.sh from a static release build; its
metadata and contents are right, and the binary extracted from it runs alone from another
path, serving the pages (embedded) and answering /readyz."""

import os
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, Server

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
    for path in ("./usr/bin/tally", "./lib/systemd/system/tally.service", "./etc/tally/tally.conf",
                 "./usr/share/doc/tally/README.md", "./usr/share/doc/tally/examples/tally-kiosk.service",
                 "./usr/share/doc/tally/examples/hostapd.conf", "./usr/share/doc/tally/examples/dnsmasq.conf"):
        assert path in contents, path


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
