//! The gRPC API from the outside: a client generated from `proto/` by another language's
//! toolchain (Python grpcio-tools), and TCP access only with a valid client certificate.

use std::{process::Command, time::Duration};

use lineage_tests::{free_port, python, python_stubs, run_to_end, tls_agent_config, Agent, Pki};

const UNIX_CLIENT: &str = r#"
import json, sys, grpc
from lineage.v1 import agent_pb2 as pb, agent_pb2_grpc as rpc
sock, exec_probe = sys.argv[1], sys.argv[2]
# grpc-core sends the percent-encoded socket path as :authority, which the agent's HTTP/2
# stack rejects as malformed; name a plain authority instead (docs/API.md).
stub = rpc.AgentStub(grpc.insecure_channel("unix:" + sock, options=[("grpc.default_authority", "localhost")]))
info = stub.GetInfo(pb.GetInfoRequest())
# Segments arrive in chunks (offset, size): join them back into the stored files.
segments, parts = [], []
for c in stub.PullSegments(pb.PullSegmentsRequest(from_segment=0, follow=False)):
    parts.append(c.data)
    if c.offset + len(c.data) == c.size:
        segments.append((c.number, b"".join(parts)))
        parts = []
listed = [s.number for s in stub.ListSegments(pb.ListSegmentsRequest()).segments]
try:
    lineage = stub.GetLineage(pb.GetLineageRequest(exec_id="0badc0de-1-2"))
    missing = "found"
except grpc.RpcError as e:
    missing = e.code().name
print(json.dumps({
    "host_id": info.host_id.hex(),
    "next_index": info.next_index,
    "probes_attached": sum(1 for p in info.probes if p.attached),
    "key_id": info.signing_key.key_id.hex(),
    "segments": [n for n, _ in segments],
    "segment_bytes": {str(n): d.hex() for n, d in segments[:3]},
    "listed": listed,
    "missing_lineage": missing,
}))
"#;

#[test]
fn a_python_client_generated_from_the_proto_calls_get_info_and_pull_segments() {
    let stubs = tempfile::tempdir().unwrap();
    python_stubs(stubs.path());
    let agent = Agent::start(&["--print", "none"]);
    run_to_end(&mut Command::new("/bin/true"));
    std::thread::sleep(Duration::from_millis(1500)); // at least one seal
    let got = python(
        stubs.path(),
        UNIX_CLIENT,
        &[agent.socket().to_str().unwrap(), ""],
    );
    let run = agent.stop();
    let data_dir = run.data_dir.clone();

    let host = std::fs::read_to_string(data_dir.join("host-id")).unwrap();
    assert_eq!(got["host_id"], host.trim());
    assert_eq!(
        got["probes_attached"],
        lineage_tests::probe_count() as u64,
        "every probe attached"
    );
    let segments = got["segments"].as_array().unwrap();
    assert!(
        !segments.is_empty(),
        "PullSegments streamed the sealed segments"
    );
    assert_eq!(&got["listed"], &got["segments"]);
    for (n, hex) in got["segment_bytes"].as_object().unwrap() {
        let file = data_dir.join(format!("segments/{:020}.seg", n.parse::<u64>().unwrap()));
        let on_disk = std::fs::read(file).unwrap();
        assert_eq!(
            hex.as_str().unwrap(),
            hex_string(&on_disk),
            "segment {n} is streamed as the exact stored bytes"
        );
    }
    assert_eq!(got["missing_lineage"], "NOT_FOUND");
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const TLS_CLIENT: &str = r#"
import json, sys, grpc
from lineage.v1 import agent_pb2 as pb, agent_pb2_grpc as rpc
addr, ca, cert, key = sys.argv[1:5]
read = lambda p: open(p, "rb").read() if p else None
creds = grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert))
stub = rpc.AgentStub(grpc.secure_channel(addr, creds))
def call(f):
    try:
        f()
        return "OK"
    except grpc.RpcError as e:
        return e.code().name
def tail():
    for _ in stub.Tail(pb.TailRequest(), timeout=1.5):
        break
result = {
    "get_info": call(lambda: stub.GetInfo(pb.GetInfoRequest(), timeout=5)),
    "tail": call(tail),
}
print(json.dumps(result))
"#;

#[test]
fn tcp_refuses_clients_without_a_certificate_and_checks_rights_per_client() {
    let pki = Pki::new(&["collector-a", "secops"]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = tls_agent_config(&pki, port, &["collector-a"], &["secops"]);
    let stubs = tempfile::tempdir().unwrap();
    python_stubs(stubs.path());
    let agent = Agent::start(&["--print", "none", "--config", config.to_str().unwrap()]);
    agent.wait_for_log(
        "gRPC listening on TCP with mutual TLS",
        Duration::from_secs(5),
    );

    let ca = pki.path("ca.pem");
    let anonymous = python(stubs.path(), TLS_CLIENT, &[&addr, &ca, "", ""]);
    let collector = python(
        stubs.path(),
        TLS_CLIENT,
        &[
            &addr,
            &ca,
            &pki.path("collector-a.pem"),
            &pki.path("collector-a.key"),
        ],
    );
    let secops = python(
        stubs.path(),
        TLS_CLIENT,
        &[&addr, &ca, &pki.path("secops.pem"), &pki.path("secops.key")],
    );
    agent.stop();

    assert_eq!(
        anonymous["get_info"], "UNAVAILABLE",
        "no client certificate: the TLS handshake is refused"
    );
    assert_eq!(
        collector["get_info"], "OK",
        "a pull client may read the chain"
    );
    assert_eq!(
        collector["tail"], "PERMISSION_DENIED",
        "pull rights do not include tail"
    );
    assert_eq!(
        secops["get_info"], "PERMISSION_DENIED",
        "tail rights do not include pull"
    );
    assert!(
        matches!(
            secops["tail"].as_str(),
            Some("OK") | Some("DEADLINE_EXCEEDED")
        ),
        "a tail client may tail: {secops}"
    );
}
