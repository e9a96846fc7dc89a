"""Fan-out under stress, functionally: a client that stops reading is cut off (WebSocket 4008,
SSE: the stream ends) without holding up anyone, and resumes from its last eventId losing
nothing; hundreds of concurrent WebSocket and SSE clients each get every event exactly once,
in order. Timing is never asserted here; `tally-load` measures it."""

import asyncio
import json
import socket
import struct
import time
import urllib.parse

import websockets

from conftest import Server, SSEStream, WSStream, seq

BIG_OPTIONS = [f"{i:02d} " + "option text " * 16 for i in range(12)]  # ~2.4 KB per poll event


def publish(server, session, index, big=True):
    body = {"question": f"P{index:04d} " + ("q" * 400 if big else ""), "options": BIG_OPTIONS if big else ["Yes", "No"], "open": True}
    server.ok("POST", f"/api/v1/sessions/{session['sessionId']}/polls", body, session["presenterToken"], expect=201)


def index_of(envelope):
    if envelope["eventType"] != "poll.opened":
        return None
    return int(envelope["payload"]["poll"]["question"][1:5])


def ws_upgrade(query):
    """A raw WebSocket upgrade request for /events."""
    return (f"GET /events?{urllib.parse.urlencode(query)} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def stalled_socket(port, request):
    """A client with a tiny receive buffer that sends `request`, reads the response head, then
    stops reading."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    return s, head.decode()


def read_all(s, timeout=30):
    s.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = s.recv(1 << 16)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
        if b"\x88" in data[-64:] and ws_close_code(data) is not None:
            break
    return data


def ws_frames(data):
    frames, i = [], 0
    while i + 2 <= len(data):
        opcode, length = data[i] & 0x0F, data[i + 1] & 0x7F
        header = 2
        if length == 126:
            length, header = struct.unpack(">H", data[i + 2:i + 4])[0], 4
        elif length == 127:
            length, header = struct.unpack(">Q", data[i + 2:i + 10])[0], 10
        if i + header + length > len(data):
            break
        frames.append((opcode, data[i + header:i + header + length]))
        i += header + length
    return frames


def ws_close_code(data):
    for opcode, payload in ws_frames(data):
        if opcode == 8:
            return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
    return None


def wait_for_metric(server, name, value, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"{name} {value}" in server.request("GET", "/metrics")[1]:
            return True
        time.sleep(0.1)
    return False


def test_a_stalled_websocket_is_closed_with_4008_and_resumes_losslessly(data_dir):
    server = Server(data_dir, extra_args=["--stream-queue-limit", "16"]).start()
    try:
        session = server.new_session()
        stalled, head = stalled_socket(server.port, ws_upgrade(
            {"sessionId": session["sessionId"], "token": session["presenterToken"], "actorType": "display"}))
        assert head.startswith("HTTP/1.1 101")
        # A well-behaved display beside it.
        healthy = server_ws(server, session)
        total = 200
        for i in range(total):
            publish(server, session, i)  # acknowledged while the stalled client holds nothing up
        assert wait_for_metric(server, "tally_slow_consumer_disconnects_total", 1), "the stalled client was not cut off"
        # The healthy display got everything, in order.
        got = [index_of(e) for e in healthy.collect(lambda e: index_of(e) == total - 1, timeout=20)]
        assert [i for i in got if i is not None] == list(range(total))
        healthy.close()
        # The stalled client reads what had been sent before it was cut off, then 4008.
        data = read_all(stalled)
        assert ws_close_code(data) == 4008
        first = [json.loads(p) for op, p in ws_frames(data) if op == 1]
        seen = [index_of(e) for e in first if index_of(e) is not None]
        assert len(seen) < total
        # It resumes from its last eventId and gets exactly the rest.
        resumed = server_ws(server, session, fromEventId=first[-1]["eventId"])
        rest = resumed.collect(lambda e: index_of(e) == total - 1, timeout=20)
        resumed.close()
        assert all(e["eventType"] != "stream.reset" for e in rest)
        seen += [index_of(e) for e in rest if index_of(e) is not None]
        assert seen == list(range(total)), "a gap or a duplicate across the disconnect"
        ids = [seq(e["eventId"]) for e in first + rest]
        assert ids == sorted(set(ids))
    finally:
        server.stop()


def test_a_stalled_sse_stream_ends_and_resumes_losslessly(data_dir):
    server = Server(data_dir, extra_args=["--stream-queue-limit", "16"]).start()
    try:
        session = server.new_session()
        query = urllib.parse.urlencode({"sessionId": session["sessionId"], "token": session["displayToken"]})
        stalled, head = stalled_socket(server.port, f"GET /events?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert head.startswith("HTTP/1.1 200") and "text/event-stream" in head
        total = 200
        for i in range(total):
            publish(server, session, i)
        assert wait_for_metric(server, "tally_slow_consumer_disconnects_total", 1), "the stalled SSE client was not cut off"
        body = dechunk(read_all(stalled))
        assert body.endswith(b"\n\n")  # the stream ended cleanly (final chunk)
        first = [json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]
        seen = [index_of(e) for e in first if index_of(e) is not None]
        assert len(seen) < total
        resumed = SSEStream(server.port, "/events?" + query, headers={"Last-Event-ID": first[-1]["eventId"]})
        rest = resumed.collect(lambda e: index_of(e) == total - 1, timeout=20)
        resumed.close()
        seen += [index_of(e) for e in rest if index_of(e) is not None]
        assert seen == list(range(total))
    finally:
        server.stop()


def dechunk(data):
    body, i = b"", data.index(b"\r\n\r\n") + 4 if data.startswith(b"HTTP/") else 0
    while i < len(data):
        end = data.find(b"\r\n", i)
        if end < 0:
            break
        size = int(data[i:end].split(b";")[0] or b"0", 16)
        if size == 0:
            break
        body += data[end + 2:end + 2 + size]
        i = end + 2 + size + 2
    return body


def server_ws(server, session, **query):
    stream = WSStream(server.events_url("ws", sessionId=session["sessionId"], token=session["presenterToken"], actorType="display", **query))
    assert stream.opened.wait(5) and stream.error is None
    time.sleep(0.2)
    return stream


def test_hundreds_of_websocket_and_sse_clients_get_every_event_once_in_order(data_dir):
    server = Server(data_dir, extra_args=["--rate-limits", "no"]).start()
    try:
        sessions = [server.new_session(f"Room {i}") for i in range(2)]
        total = 25

        async def websocket_client(session, ready):
            token = server.join(session["joinCode"])["participantToken"]
            url = server.events_url("ws", sessionId=session["sessionId"], token=token)
            events = []
            async with websockets.connect(url, max_size=2**22) as ws:
                ready.set_result(True)
                while not events or index_of(events[-1]) != total - 1:
                    events.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            return session["sessionId"], events

        async def sse_client(session, ready):
            token = server.join(session["joinCode"])["participantToken"]
            query = urllib.parse.urlencode({"sessionId": session["sessionId"], "token": token})
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(f"GET /events?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            await writer.drain()
            events, buffer = [], b""
            ready.set_result(True)
            while not events or index_of(events[-1]) != total - 1:
                buffer += await asyncio.wait_for(reader.read(1 << 16), 60)
                body = dechunk(b"HTTP/1.1 200\r\n\r\n" + buffer.split(b"\r\n\r\n", 1)[1]) if b"\r\n\r\n" in buffer else b""
                events = [json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]
            writer.close()
            return session["sessionId"], events

        async def main():
            loop = asyncio.get_running_loop()
            tasks, readies = [], []
            for i in range(300):
                ready = loop.create_future()
                client = websocket_client if i % 3 else sse_client  # 200 WebSocket, 100 SSE
                tasks.append(asyncio.create_task(client(sessions[i % 2], ready)))
                readies.append(ready)
            await asyncio.wait_for(asyncio.gather(*readies), 60)
            await asyncio.sleep(1)
            for i in range(total):
                for session in sessions:
                    await loop.run_in_executor(None, publish, server, session, i, False)
            return await asyncio.wait_for(asyncio.gather(*tasks), 120)

        results = asyncio.run(main())
        assert len(results) == 300
        for session_id, events in results:
            assert all(e["sessionId"] == session_id for e in events)
            assert [index_of(e) for e in events if index_of(e) is not None] == list(range(total))
            ids = [seq(e["eventId"]) for e in events]
            assert ids == sorted(set(ids)), "out of order or duplicated"
        assert "tally_slow_consumer_disconnects_total 0" in server.request("GET", "/metrics")[1]
    finally:
        server.stop()


def test_first_pings_are_spread_over_the_interval_and_repeat(data_dir):
    # 40 connections opened together: with a fixed first delay they would all be pinged in the
    # same instant; each one's first ping comes at a random point of the 4 s interval instead.
    server = Server(data_dir, extra_args=["--ping-interval", "4"]).start()
    try:
        session = server.new_session()
        request = ws_upgrade({"sessionId": session["sessionId"], "token": session["displayToken"]})
        sockets = [stalled_socket(server.port, request)[0] for _ in range(40)]
        opened = time.monotonic()
        pings = {i: [] for i in range(40)}
        buffers = {i: b"" for i in range(40)}
        for s in sockets:
            s.setblocking(False)
        while time.monotonic() - opened < 9.5:
            for i, s in enumerate(sockets):
                try:
                    buffers[i] += s.recv(4096)
                except BlockingIOError:
                    continue
                frames = ws_frames(buffers[i])
                for opcode, _ in frames:
                    if opcode == 9:
                        pings[i].append(time.monotonic() - opened)
                buffers[i] = b""  # pings are tiny and arrive whole
            time.sleep(0.01)
        firsts = sorted(p[0] for p in pings.values() if p)
        assert len(firsts) == 40, "every connection is pinged within its first interval"
        assert firsts[-1] < 4.5
        assert firsts[-1] - firsts[0] > 1.0, f"first pings bunched together: {firsts}"
        # And then every interval.
        assert all(len(p) >= 2 and 3.5 < p[1] - p[0] < 4.5 for p in pings.values()), pings
        for s in sockets:
            s.close()
    finally:
        server.stop()
