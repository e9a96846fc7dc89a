"""What the box keeps to itself: the data directory (signing secret, password hash, every ballot)
is readable by the service alone whatever umask it was started with, and an exported results file
does not let anyone follow one person's answers from poll to poll unless the presenter asks."""

import csv
import io
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time

from conftest import BINARY, Server


def modes(directory):
    """The directory's mode and each file's, as octal numbers."""
    files = {name: stat.S_IMODE(os.lstat(os.path.join(directory, name)).st_mode) for name in os.listdir(directory)}
    return stat.S_IMODE(os.stat(directory).st_mode), files


def loosen(directory):
    """What an older version left behind under the usual umask 022."""
    os.chmod(directory, 0o755)
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o644)


def with_umask(mask, action):
    old = os.umask(mask)  # inherited by the child started inside
    try:
        return action()
    finally:
        os.umask(old)


def cast_a_vote(server):
    s = server.new_session()
    poll = server.poll(s["sessionId"], s["presenterToken"], open=True)
    assert server.vote(s["sessionId"], poll["pollId"], server.join(s["joinCode"])["participantToken"], ["o1"])[0] == 201
    time.sleep(0.5)  # the projection writes the ballot to tally.sqlite within ~100 ms
    return s


def test_a_fresh_data_directory_is_private_even_under_umask_000():
    root = tempfile.mkdtemp(prefix="tally-e2e-")
    try:
        data = os.path.join(root, "data")  # absent: the server makes it
        server = Server(data)
        server.log_path = os.path.join(root, "server.log")
        with_umask(0o000, server.start)
        try:
            cast_a_vote(server)
            directory, files = modes(data)
            assert {"tally.sqlite", "tally.sqlite-wal", "tally.sqlite-shm", "events.ring"} <= set(files), files
            assert directory == 0o700, oct(directory)
            assert files == {name: 0o600 for name in files}, {n: oct(m) for n, m in files.items()}
        finally:
            server.stop()
    finally:
        shutil.rmtree(root)


def test_a_directory_an_older_version_left_readable_is_repaired(data_dir):
    server = Server(data_dir).start()
    cast_a_vote(server)
    server.stop()
    loosen(data_dir)
    server = with_umask(0o000, Server(data_dir).start)
    try:
        directory, files = modes(data_dir)
        assert directory == 0o700 and files == {name: 0o600 for name in files}, (oct(directory), files)
        assert "permissions tightened in the data directory" in server.logs() and "tally.sqlite" in server.logs()
    finally:
        server.stop()

    # The console commands that open the database repair it the same way, and say so.
    for command in (["export", "--format", "csv", "--session", "nope"],
                    ["reset-password", "--password-stdin"]):
        loosen(data_dir)
        out = with_umask(0o000, lambda: subprocess.run(
            [BINARY, *command, "--data-dir", data_dir], input="a new long password\n", capture_output=True, text=True, timeout=30))
        assert "permissions tightened" in out.stderr, (command, out.stderr)
        directory, files = modes(data_dir)
        assert directory == 0o700 and files == {name: 0o600 for name in files}, (command, oct(directory), files)


def ballots(doc):
    """poll id → [(participant, optionIds)] from a JSON export."""
    return {p["poll"]["id"]: [(b["participant"], b["optionIds"]) for b in p["ballots"]] for p in doc["polls"]}


def test_export_names_participants_by_a_pseudonym_per_poll_unless_linking_is_asked(server):
    s = server.new_session("Pseudonyms")
    sid, presenter = s["sessionId"], s["presenterToken"]
    alice, bob = server.join(s["joinCode"]), server.join(s["joinCode"])
    first = server.poll(sid, presenter, open=True)["pollId"]
    assert server.vote(sid, first, alice["participantToken"], ["o1"])[0] == 201
    assert server.vote(sid, first, bob["participantToken"], ["o2"])[0] == 201
    second = server.poll(sid, presenter, options=("Tea", "Coffee"), open=True)["pollId"]  # closes the first
    assert server.vote(sid, second, alice["participantToken"], ["o2"])[0] == 201
    ids = {alice["participantId"], bob["participantId"]}

    def export(query=""):
        status, body, _ = server.request("GET", f"/api/v1/sessions/{sid}/export.json{query}", token=presenter)
        assert status == 200, body
        return body

    default = export()
    got = ballots(default)
    alice_first = next(name for name, options in got[first] if options == ["o1"])
    bob_first = next(name for name, options in got[first] if options == ["o2"])
    [(alice_second, _)] = got[second]
    assert default["participantPseudonyms"] == "perPoll"
    assert alice_first != alice_second, "alice's two ballots cannot be matched"
    assert bob_first != alice_second
    assert not ids & {alice_first, bob_first, alice_second}, "never the id from join"
    assert all(i not in json.dumps(default) for i in ids)

    linked = export("?linkParticipants=true")
    got = ballots(linked)
    assert linked["participantPseudonyms"] == "linked"
    alice_first = next(name for name, options in got[first] if options == ["o1"])
    bob_first = next(name for name, options in got[first] if options == ["o2"])
    [(alice_second, _)] = got[second]
    assert alice_first == alice_second and bob_first != alice_first, "asked for: one name per person"
    assert all(i not in json.dumps(linked) for i in ids)
    assert ballots(export("?linkParticipants=false")) == ballots(default)

    status, problem, _ = server.request("GET", f"/api/v1/sessions/{sid}/export.json?linkParticipants=yes", token=presenter)
    assert status == 400 and "linkParticipants" in problem["detail"], problem

    # The CSV has counts only: the same either way, and no participant in it.
    plain = server.request("GET", f"/api/v1/sessions/{sid}/export.csv", token=presenter)[1]
    assert server.request("GET", f"/api/v1/sessions/{sid}/export.csv?linkParticipants=true", token=presenter)[1] == plain
    assert [r["votes"] for r in csv.DictReader(io.StringIO(plain))] == ["1", "1", "0", "1"]
    assert all(i not in plain for i in ids)

    # `tally export` on the box names everyone exactly as the presenter's download does.
    for flags, expected in (([], default), (["--link-participants"], linked)):
        want = {k: sorted(v) for k, v in ballots(expected).items()}
        deadline = time.monotonic() + 10
        while True:  # the database projection trails the ring by ~100 ms (more on a busy box)
            out = subprocess.run([BINARY, "export", "--data-dir", server.data_dir, "--session", sid, "--format", "json", *flags],
                                 capture_output=True, text=True, timeout=30)
            caught_up = out.returncode == 0
            if caught_up:
                doc = json.loads(out.stdout)
                got = {k: sorted(v) for k, v in ballots(doc).items()}
                caught_up = got == want
            if caught_up or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert out.returncode == 0, out.stderr
        assert doc["participantPseudonyms"] == expected["participantPseudonyms"]
        assert got == want
