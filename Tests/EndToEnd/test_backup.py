"""Backup and restore (`tally backup`, `tally restore`, the operator's download): a backup of a
box under a vote burst holds every vote acknowledged before it began and restores to exactly
those counts; a quiet backup restores the box as it is; damaged and newer archives are refused
with nothing touched; a restore never lands on a running box or over data without --force."""

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import threading

from conftest import BINARY, PASSWORD, Server


def tally(*args):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=120)


def write_tar(path, members):
    """A tar of `members` (name → bytes), as `tar` would write it."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def snapshot(server, sid, token):
    return server.ok("GET", f"/api/v1/sessions/{sid}", token=token)


def counts(snap):
    return [[c["count"] for c in p["results"]["counts"]] for p in snap["polls"]]


def settled(server, sid, token):
    """The session once its coalesced results have caught up with the last ballot."""
    import time
    before, deadline = None, time.monotonic() + 5
    while time.monotonic() < deadline:
        snap = snapshot(server, sid, token)
        if snap == before:
            return snap
        before = snap
        time.sleep(0.2)
    return before


def test_a_backup_under_a_vote_burst_restores_every_vote_acknowledged_before_it(data_dir):
    server = Server(data_dir).start()
    s = server.new_session("Backed up")
    sid, presenter = s["sessionId"], s["presenterToken"]
    poll = server.poll(sid, presenter, options=["a", "b"], open=True)["pollId"]
    voters = [server.join(s["joinCode"])["participantToken"] for _ in range(120)]
    acknowledged = []
    lock = threading.Lock()

    def vote(tokens):
        for token in tokens:
            status, _, _ = server.vote(sid, poll, token, ["o1"])
            if status == 201:
                with lock:
                    acknowledged.append(token)

    threads = [threading.Thread(target=vote, args=(voters[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    while True:  # let the burst get going, then take the backup in the middle of it
        with lock:
            if len(acknowledged) >= 20:
                break
    with lock:
        before = len(acknowledged)
    during = os.path.join(tempfile.mkdtemp(prefix="tally-backup-"), "during.tar")
    made = tally("backup", "--to", during, "--data-dir", data_dir)
    with lock:
        after = len(acknowledged)
    for t in threads:
        t.join()
    assert made.returncode == 0, made.stderr
    assert "Wrote " + during in made.stdout and "1 session" in made.stdout, made.stdout
    assert len(acknowledged) == 120
    live = settled(server, sid, presenter)
    quiet = os.path.join(os.path.dirname(during), "quiet.tar")
    assert tally("backup", "--to", quiet, "--data-dir", data_dir).returncode == 0
    server.stop()

    # The archive is a plain tar whose checksums `sha256sum -c` would accept.
    with tarfile.open(during) as archive:
        assert archive.getnames() == ["tally-backup.json", "tally.sqlite", "SHA256SUMS"]
        sums = dict(reversed(line.split("  ")) for line in archive.extractfile("SHA256SUMS").read().decode().splitlines())
        for name in ("tally-backup.json", "tally.sqlite"):
            assert hashlib.sha256(archive.extractfile(name).read()).hexdigest() == sums[name]
        manifest = json.loads(archive.extractfile("tally-backup.json").read())
    assert manifest["format"] == 1 and manifest["sessions"] == 1 and manifest["operatorPassword"] is False

    # Restored mid-burst: every vote acknowledged before the backup began, none it never saw.
    restored_dir = tempfile.mkdtemp(prefix="tally-restored-")
    done = tally("restore", during, "--data-dir", restored_dir)
    assert done.returncode == 0, done.stderr
    assert "no operator password" in done.stdout
    restored = Server(restored_dir).start()
    try:
        snap = settled(restored, sid, presenter)  # the presenter's link still works: same secret
        total = sum(counts(snap)[0])
        assert before <= total <= after, (before, total, after)
        assert snap["participantCount"] == 120
    finally:
        restored.stop()

    # Restored after the burst: exactly the box as it was.
    quiet_dir = tempfile.mkdtemp(prefix="tally-restored-")
    assert tally("restore", quiet, "--data-dir", quiet_dir).returncode == 0
    again = Server(quiet_dir).start()
    try:
        assert counts(settled(again, sid, presenter)) == counts(live) == [[120, 0]]
    finally:
        again.stop()


def test_the_operator_downloads_a_backup_without_the_password(data_dir):
    server = Server(data_dir).start()
    s = server.new_session("Downloaded")
    sid, presenter = s["sessionId"], s["presenterToken"]
    poll = server.poll(sid, presenter, options=["a", "b"], open=True)["pollId"]
    phone = server.join(s["joinCode"])["participantToken"]
    assert server.vote(sid, poll, phone, ["o2"])[0] == 201
    assert server.request("GET", "/api/v1/operator/backup")[0] == 401
    assert server.request("GET", "/api/v1/operator/backup", token=presenter)[0] == 403
    assert server.request("GET", "/api/v1/operator/backup", token=phone)[0] == 403
    operator = server.operator_token()
    head = server.request("HEAD", "/api/v1/operator/backup", token=operator)
    assert head[0] == 200 and head[1] == "", "HEAD says what a GET sends, and makes no archive"
    conn = server.connection()
    conn.request("GET", "/api/v1/operator/backup", headers={"Authorization": f"Bearer {operator}"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/x-tar"
    assert resp.getheader("Content-Disposition").startswith('attachment; filename="tally-backup-')
    assert int(resp.getheader("Content-Length")) == len(body)
    assert not [n for n in os.listdir(data_dir) if n.startswith(".download") or n.startswith(".backup")], "nothing left behind"
    server.stop()

    archive = os.path.join(tempfile.mkdtemp(prefix="tally-dl-"), "download.tar")
    with open(archive, "wb") as f:
        f.write(body)
    target = tempfile.mkdtemp(prefix="tally-restored-")
    assert tally("restore", archive, "--data-dir", target).returncode == 0
    box = Server(target, password=None).start()
    try:
        assert box.request("POST", "/api/v1/auth/login", {"password": PASSWORD})[0] != 200, "the password stayed behind"
        assert box.request("GET", "/api/v1/sessions", token=operator)[0] == 401, "no operator sign-in survives a restore"
        assert counts(snapshot(box, sid, presenter)) == [[0, 1]]
    finally:
        box.stop()


def test_a_damaged_or_newer_archive_is_refused_and_nothing_is_touched(data_dir):
    server = Server(data_dir).start()
    server.new_session("Damaged")
    server.stop()
    folder = tempfile.mkdtemp(prefix="tally-bad-")
    good = os.path.join(folder, "good.tar")
    assert tally("backup", "--to", good, "--data-dir", data_dir).returncode == 0

    # One byte flipped inside the database member.
    with tarfile.open(good) as archive:
        offset = archive.getmember("tally.sqlite").offset_data + 4096
    damaged = os.path.join(folder, "damaged.tar")
    with open(good, "rb") as f:
        data = bytearray(f.read())
    data[offset] ^= 0xFF
    with open(damaged, "wb") as f:
        f.write(data)
    target = tempfile.mkdtemp(prefix="tally-target-")
    refused = tally("restore", damaged, "--data-dir", target)
    assert refused.returncode != 0 and "damaged" in refused.stderr and "tally.sqlite" in refused.stderr, refused.stderr
    assert sorted(os.listdir(target)) in ([], ["tally.lock"]), "nothing restored"

    # A well-formed archive from a newer Tally.
    with tarfile.open(good) as archive:
        members = {n: archive.extractfile(n).read() for n in ("tally-backup.json", "tally.sqlite")}
    manifest = json.loads(members["tally-backup.json"])
    manifest["format"] = 99
    members["tally-backup.json"] = json.dumps(manifest).encode()
    members["SHA256SUMS"] = "".join(
        f"{hashlib.sha256(members[n]).hexdigest()}  {n}\n" for n in ("tally-backup.json", "tally.sqlite")).encode()
    newer = write_tar(os.path.join(folder, "newer.tar"), members)
    refused = tally("restore", newer, "--data-dir", target)
    assert refused.returncode != 0 and "newer Tally" in refused.stderr and "format 99" in refused.stderr, refused.stderr
    assert sorted(os.listdir(target)) in ([], ["tally.lock"])

    # A well-formed archive with a member no backup has (SQLite would read a -wal beside the copy).
    members["tally.sqlite-wal"] = b"\0" * 32
    extra = write_tar(os.path.join(folder, "extra.tar"), members)
    refused = tally("restore", extra, "--data-dir", target)
    assert refused.returncode != 0 and "which a backup never does" in refused.stderr, refused.stderr
    assert sorted(os.listdir(target)) in ([], ["tally.lock"])

    # Not an archive at all.
    junk = os.path.join(folder, "junk.tar")
    with open(junk, "wb") as f:
        f.write(b"not a backup" * 100)
    refused = tally("restore", junk, "--data-dir", target)
    assert refused.returncode != 0 and "not a Tally backup" in refused.stderr, refused.stderr


def test_restore_refuses_a_running_box_and_asks_before_replacing_data(data_dir):
    source = Server(data_dir).start()
    s = source.new_session("Original")
    source.stop()
    # A stored password (the --operator-password of the test servers is configuration, not data).
    stored = subprocess.run([BINARY, "reset-password", "--data-dir", data_dir, "--password-stdin"],
                            input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert stored.returncode == 0, stored.stderr
    archive = os.path.join(tempfile.mkdtemp(prefix="tally-force-"), "with-password.tar")
    made = tally("backup", "--to", archive, "--data-dir", data_dir, "--include-password")
    assert made.returncode == 0 and "operator password included" in made.stdout, made.stdout

    target = tempfile.mkdtemp(prefix="tally-target-")
    running = Server(target, password=None).start()
    refused = tally("restore", archive, "--data-dir", target)
    assert refused.returncode != 0 and "Tally is running" in refused.stderr, refused.stderr
    running.stop()

    refused = tally("restore", archive, "--data-dir", target)
    assert refused.returncode != 0 and "--force" in refused.stderr, refused.stderr
    forced = tally("restore", archive, "--data-dir", target, "--force")
    assert forced.returncode == 0, forced.stderr
    aside = [n for n in os.listdir(target) if n.startswith("before-restore-")]
    assert len(aside) == 1 and "tally.sqlite" in os.listdir(os.path.join(target, aside[0])), "the old data is kept"
    assert "password is the one the backup carried" in forced.stdout

    box = Server(target, password=None).start()
    try:
        assert box.request("POST", "/api/v1/auth/login", {"password": PASSWORD})[0] == 200
        assert box.ok("GET", f"/api/v1/sessions/{s['sessionId']}", token=s["presenterToken"])["title"] == "Original"
    finally:
        box.stop()
