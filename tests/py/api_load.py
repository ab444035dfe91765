"""Drives the agent's gRPC API the way a third party would: stubs generated from proto/ alone,
grpcio with default channel options (only the authority, which gRPC-core needs on a Unix socket;
docs/API.md). Subcommands print one JSON object on stdout.

  pull SOCK                  every segment, chunks joined; prints sha256 and size per segment
  markers SOCK NONCE N       Tail kinds=[exec] while an unpaced openat storm runs; N marker
                             execs `/bin/true NONCE i`; prints the markers seen and `missed`
  storm N                    N open+close of /dev/null as fast as possible; prints the rate
  abuse SOCK SECONDS         ListSegments loop, GetLineage loop, 20 Tail streams reading and
                             one that never reads, for SECONDS; prints what each did
  bad SOCK                   every bad input of issue 11; prints the status code of each
"""
import hashlib, json, os, subprocess, sys, threading, time

import grpc
from lineage.v1 import agent_pb2 as pb, agent_pb2_grpc as rpc


def channel(sock):
    return grpc.insecure_channel("unix:" + sock, options=[("grpc.default_authority", "localhost")])


def pull(sock):
    stub = rpc.AgentStub(channel(sock))
    out, parts, biggest_chunk = {}, [], 0
    for c in stub.PullSegments(pb.PullSegmentsRequest(from_segment=0, follow=False)):
        biggest_chunk = max(biggest_chunk, len(c.data))
        assert c.offset == sum(len(p) for p in parts), "chunks in order"
        parts.append(c.data)
        if c.offset + len(c.data) == c.size:
            data = b"".join(parts)
            out[str(c.number)] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            parts = []
    return {"segments": out, "biggest_chunk": biggest_chunk}


def storm(n):
    start = time.monotonic()
    for _ in range(n):
        os.close(os.open("/dev/null", os.O_RDONLY))
    took = time.monotonic() - start
    return {"opens": n, "seconds": took, "rate": n / took}


def event_of(message):
    """The event a TailMessage carries, as a dict (JSON today; typed events once they land)."""
    if message.HasField("event_json"):
        return json.loads(message.event_json)
    return None


def markers(sock, nonce, n):
    stub = rpc.AgentStub(channel(sock))
    seen, missed, done = [], [0], threading.Event()
    stream = stub.Tail(pb.TailRequest(filter=pb.TailFilter(kinds=["exec"])))

    def read():
        for m in stream:
            if m.HasField("missed"):
                missed[0] += m.missed
                continue
            ev = event_of(m)
            argv = ev.get("argv") or []
            if len(argv) == 3 and argv[1] == nonce:
                seen.append(argv)
                if len(seen) == n:
                    done.set()
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1.0)  # the capture thread picks up the subscription on its next turn
    gen = subprocess.Popen([sys.executable, __file__, "storm", "3000000"], stdout=subprocess.PIPE)
    time.sleep(0.5)
    for i in range(n):
        subprocess.run(["/bin/true", nonce, str(i)], check=True)
        time.sleep(0.01)
    storm_running = gen.poll() is None
    done.wait(timeout=30)
    gen.kill()
    gen.wait()
    stream.cancel()
    return {"markers": seen, "missed": missed[0], "storm_running_after_markers": storm_running}


def abuse(sock, seconds):
    stop = time.monotonic() + seconds
    counts = {"list_calls": 0, "listed": 0, "lineage_calls": 0, "tail_messages": 0, "tail_missed": 0}
    lock = threading.Lock()

    def bump(k, v=1):
        with lock:
            counts[k] += v

    def lister():
        stub = rpc.AgentStub(channel(sock))
        while time.monotonic() < stop:
            frm = 0
            while True:
                r = stub.ListSegments(pb.ListSegmentsRequest(**{"from": frm}))
                bump("list_calls")
                bump("listed", len(r.segments))
                if not r.more or not r.segments:
                    break
                frm = r.segments[-1].number + 1

    # A running process to ask about: its ancestry and the whole table's descendants walk.
    sleeper = subprocess.Popen(["/bin/sleep", str(seconds + 30)])
    exec_id = [None]

    def lineage():
        stub = rpc.AgentStub(channel(sock))
        tag = "%d.5" % (seconds + 31)
        finder = stub.Tail(pb.TailRequest(filter=pb.TailFilter(kinds=["exec"])))
        time.sleep(1.0)  # subscribed before the exec it looks for
        probe = subprocess.Popen(["/bin/sleep", tag])
        for m in finder:
            ev = event_of(m) if not m.HasField("missed") else None
            if ev and (ev.get("argv") or [None, None])[1:2] == [tag]:
                exec_id[0] = ev["exec_id"]
                break
        finder.cancel()
        while time.monotonic() < stop:
            try:
                stub.GetLineage(pb.GetLineageRequest(exec_id=exec_id[0]))
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            bump("lineage_calls")
        probe.kill()

    def tailer():
        stub = rpc.AgentStub(channel(sock))
        s = stub.Tail(pb.TailRequest())
        for m in s:
            if m.HasField("missed"):
                bump("tail_missed", m.missed)
            else:
                bump("tail_messages")
            if time.monotonic() >= stop:
                s.cancel()
                return

    # One client that never reads: the call is open, its messages pile up in flow control.
    stuck_channel = channel(sock)
    stuck = rpc.AgentStub(stuck_channel).Tail(pb.TailRequest())
    threads = [threading.Thread(target=f, daemon=True) for f in [lister, lineage] + [tailer] * 20]
    for t in threads:
        t.start()
    print("abusing", file=sys.stderr, flush=True)
    for t in threads:
        t.join(timeout=seconds + 30)
    stuck.cancel()
    sleeper.kill()
    counts["exec_id"] = exec_id[0]
    return counts


def bad(sock):
    stub = rpc.AgentStub(channel(sock))
    out = {}

    def code(name, f):
        try:
            r = f()
            out[name] = {"code": "OK"}
            return r
        except grpc.RpcError as e:
            out[name] = {"code": e.code().name, "details": e.details() or "",
                         "metadata": {k: v for k, v in (e.trailing_metadata() or ())}}

    def first(stream):
        for m in stream:
            return m

    code("tail_bogus_kind", lambda: first(stub.Tail(pb.TailRequest(filter=pb.TailFilter(kinds=["bogus"])), timeout=5)))
    code("tail_bad_subtree", lambda: first(stub.Tail(pb.TailRequest(filter=pb.TailFilter(exec_id_subtree="no-such-id")), timeout=5)))
    code("tail_huge_pattern", lambda: first(stub.Tail(pb.TailRequest(filter=pb.TailFilter(binary_pattern="x" * 100000)), timeout=5)))
    code("ack_max", lambda: stub.AckSegments(pb.AckSegmentsRequest(collector="c1", up_to=2**64 - 1)))
    code("ack_ok", lambda: stub.AckSegments(pb.AckSegmentsRequest(collector="c1", up_to=0)))
    code("pull_below_first", lambda: first(stub.PullSegments(pb.PullSegmentsRequest(from_segment=0), timeout=5)))
    code("lineage_huge_id", lambda: stub.GetLineage(pb.GetLineageRequest(exec_id="a" * (1 << 20))))
    code("lineage_unknown", lambda: stub.GetLineage(pb.GetLineageRequest(exec_id="0badc0de-1-2")))
    listed = code("list_zero_alone", lambda: stub.ListSegments(pb.ListSegmentsRequest(**{"from": 0, "to": 0})))
    out["list_zero_alone"]["numbers"] = [s.number for s in listed.segments] if listed else None
    garbage = channel(sock).unary_unary("/lineage.v1.Agent/GetLineage",
                                        request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)
    code("garbage_bytes", lambda: garbage(b"\xff\xff\xff\xff\x0f\x00garbage"))
    return out


def tailend(sock):
    """Holds a Tail stream open until the agent ends it; returns how it ended."""
    try:
        for _ in rpc.AgentStub(channel(sock)).Tail(pb.TailRequest(), timeout=60):
            pass
        return {"code": "OK"}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details() or ""}


def health(sock):
    """grpc.health.v1 Check for service "" without the optional grpcio-health package: an empty
    request, and the answer's field 1 is the status (1 SERVING, 2 NOT_SERVING)."""
    check = channel(sock).unary_unary("/grpc.health.v1.Health/Check",
                                      request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
    answer = check(b"", timeout=5)
    return {b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING"}.get(answer, answer.hex())


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "pull":
        r = pull(sys.argv[2])
    elif cmd == "storm":
        r = storm(int(sys.argv[2]))
    elif cmd == "markers":
        r = markers(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "abuse":
        r = abuse(sys.argv[2], float(sys.argv[3]))
    elif cmd == "tailend":
        r = tailend(sys.argv[2])
    elif cmd == "bad":
        r = bad(sys.argv[2])
        r["health"] = health(sys.argv[2])
    else:
        raise SystemExit("unknown command " + cmd)
    print(json.dumps(r))
