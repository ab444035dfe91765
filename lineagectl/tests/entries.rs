//! `lineagectl entries`: output format (the kernel tests count events with `--json`),
//! filters, and robustness against bad files.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use lineage_evidence::entry::{
    AgentStop, DropReason, Dropped, Loss, Retention, RetentionReason, StopReason,
};
use lineage_evidence::{ChainWriter, HostId, SecretKey, SegmentStore};

fn lineagectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lineagectl"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// An agent data directory (`<dir>/segments/`) with three segments:
/// 0: EVENT ×2 (JSON), 1: LOSS, DROPPED, EVENT (not JSON), EVENT (schema 7), 2: RETENTION,
/// EVENT (JSON), AGENT_STOP. Indices 0..=8.
fn make_dir(dir: &Path) {
    let key = SecretKey::from_seed([3; 32]);
    let store = SegmentStore::create(dir).unwrap();
    let mut w = ChainWriter::new(HostId([7; 16]));
    w.append_event(1, br#"{"type":"exec","pid":1}"#).unwrap();
    w.append_event(1, br#"{"type":"exit","pid":1,"code":0}"#)
        .unwrap();
    let s0 = w.seal(1, &key);
    store.write(&s0).unwrap();
    w.append_with(|b| {
        Loss {
            cpu: 2,
            flags: 0,
            first_seq: 10,
            last_seq: 11,
            counter_delta: 2,
            counter_total: 9,
        }
        .encode_into(b)
    })
    .unwrap();
    w.append_with(|b| {
        Dropped {
            reason: DropReason::QueueFull,
            count: 3,
            first_time_ns: 100,
            last_time_ns: 200,
        }
        .encode_into(b)
    })
    .unwrap();
    w.append_event(1, b"not json").unwrap();
    w.append_event(7, &[0xde, 0xad]).unwrap();
    store.write(&w.seal(2, &key)).unwrap();
    w.append_with(|b| {
        Retention {
            reason: RetentionReason::HardCap,
            last_deleted_segment: 0,
            end_index: 2,
            deleted_bytes: 500,
            deleted_segments: 1,
            last_deleted_header_digest: s0.header.digest(),
        }
        .encode_into(b)
    })
    .unwrap();
    w.append_event(1, br#"{"type":"fork","pid":2}"#).unwrap();
    w.append_with(|b| {
        AgentStop {
            reason: StopReason::Signal,
            time_ns: 5,
        }
        .encode_into(b)
    })
    .unwrap();
    store.write(&w.seal(3, &key)).unwrap();
}

#[test]
fn json_output_has_the_documented_shape() {
    let tmp = tempfile::tempdir().unwrap();
    make_dir(tmp.path());
    let o = lineagectl(&["entries", tmp.path().to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9);
    // Exactly the shape the kernel tests rely on.
    assert_eq!(
        lines[0],
        r#"{"index":0,"segment":0,"kind":"EVENT","schema":1,"event":{"pid":1,"type":"exec"}}"#
    );
    assert_eq!(
        lines[2],
        r#"{"index":2,"segment":1,"kind":"LOSS","cpu":2,"flags":0,"first_seq":10,"last_seq":11,"counter_delta":2,"counter_total":9}"#
    );
    assert_eq!(
        lines[3],
        r#"{"index":3,"segment":1,"kind":"DROPPED","reason":"queue_full","count":3,"first_time_ns":100,"last_time_ns":200}"#
    );

    let v = json_lines(&o);
    let indices: Vec<u64> = v.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, (0..9).collect::<Vec<_>>());
    assert_eq!(v[1]["event"]["code"], 0);
    assert_eq!(v[4]["kind"], "EVENT");
    assert_eq!(v[4]["payload_hex"], hex::encode("not json"));
    assert!(v[4].get("event").is_none());
    assert_eq!(
        (v[5]["schema"].as_u64(), &v[5]["payload_hex"]),
        (Some(7), &"dead".into())
    );
    assert_eq!(v[6]["kind"], "RETENTION");
    assert_eq!(v[6]["segment"], 2);
    assert_eq!(v[6]["reason"], "hard_cap");
    assert_eq!(v[6]["last_deleted_segment"], 0);
    assert_eq!(v[6]["end_index"], 2);
    assert_eq!(v[6]["deleted_bytes"], 500);
    assert_eq!(v[6]["deleted_segments"], 1);
    assert_eq!(
        v[6]["last_deleted_header_digest"].as_str().unwrap().len(),
        64
    );
    assert_eq!(v[8]["kind"], "AGENT_STOP");
    assert_eq!(v[8]["reason"], "signal");
    let events = v
        .iter()
        .filter(|l| l["kind"] == "EVENT" && l["schema"] == 1)
        .count();
    assert_eq!(events, 4);

    // The segments directory itself works too.
    let o = lineagectl(&[
        "entries",
        tmp.path().join("segments").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(stdout(&o), text);
}

#[test]
fn human_output_is_one_line_per_entry() {
    let tmp = tempfile::tempdir().unwrap();
    make_dir(tmp.path());
    let o = lineagectl(&["entries", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        words(lines[0]),
        ["0", "0", "EVENT", "schema=1", r#"{"pid":1,"type":"exec"}"#]
    );
    assert_eq!(
        words(lines[3]),
        [
            "3",
            "1",
            "DROPPED",
            "reason=queue_full",
            "count=3",
            "first_time_ns=100",
            "last_time_ns=200"
        ]
    );
    assert!(lines[5].contains("schema=7 hex:dead"), "{}", lines[5]);
    assert!(lines[6].contains("RETENTION") && lines[6].contains("last_deleted_segment=0"));
}

#[test]
fn filters_by_kind_and_index() {
    let tmp = tempfile::tempdir().unwrap();
    make_dir(tmp.path());
    let dir = tmp.path().to_str().unwrap();
    let kinds = |args: &[&str]| -> Vec<(u64, String)> {
        let mut all = vec!["entries", dir, "--json"];
        all.extend_from_slice(args);
        let o = lineagectl(&all);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        json_lines(&o)
            .iter()
            .map(|l| {
                (
                    l["index"].as_u64().unwrap(),
                    l["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let ev = |i: u64| (i, "EVENT".to_string());
    assert_eq!(
        kinds(&["--kind", "event"]),
        vec![ev(0), ev(1), ev(4), ev(5), ev(7)]
    );
    assert_eq!(
        kinds(&["--kind", "LOSS", "--kind", "9"]),
        vec![(2, "LOSS".into()), (3, "DROPPED".into())]
    );
    assert_eq!(
        kinds(&["--kind", "agent-stop"]),
        vec![(8, "AGENT_STOP".into())]
    );
    assert_eq!(kinds(&["--from", "4", "--to", "6"]).len(), 3);
    assert_eq!(
        kinds(&["--from", "5", "--kind", "EVENT"]),
        vec![ev(5), ev(7)]
    );
    assert!(kinds(&["--from", "9"]).is_empty());
    assert!(kinds(&["--kind", "heartbeat"]).is_empty());

    for bad in [
        &["--kind", "nonsense"][..],
        &["--from", "5", "--to", "4"],
        &["--from", "-1"],
    ] {
        let mut all = vec!["entries", dir];
        all.extend_from_slice(bad);
        assert_eq!(lineagectl(&all).status.code(), Some(4), "{bad:?}");
    }
    assert_eq!(
        lineagectl(&["entries", "/nonexistent/dir"]).status.code(),
        Some(4)
    );
    let help = stdout(&lineagectl(&["entries", "--help"]));
    assert!(help.contains("Does NOT verify"), "{help}");
    assert!(help.contains("lineagectl verify"), "{help}");
}

#[test]
fn bad_files_are_skipped_with_a_warning_never_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    make_dir(tmp.path());
    let segs = tmp.path().join("segments");
    let name = |n: u64| segs.join(format!("{n:020}.seg"));
    // Segment 1 truncated in its entries, a garbage file, an empty one, a too-short one, a
    // sparse file over the size limit, a directory with a segment name, and a stray file.
    let one = fs::read(name(1)).unwrap();
    fs::write(name(1), &one[..one.len() - 3]).unwrap();
    fs::write(name(5), b"garbage that is not a segment").unwrap();
    fs::write(name(6), b"").unwrap();
    fs::write(name(7), &one[..100]).unwrap();
    fs::File::create(name(8))
        .unwrap()
        .set_len(lineage_evidence::segment::MAX_SEGMENT_LEN + 1)
        .unwrap();
    fs::create_dir(name(9)).unwrap();
    fs::write(segs.join("notes.txt"), b"hello").unwrap();
    // A copy of segment 0 under another name (a replay) must not double the events.
    fs::copy(name(0), name(10)).unwrap();

    let o = lineagectl(&["entries", tmp.path().to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    for n in [1, 5, 6, 7, 8, 9, 10] {
        assert!(
            err.contains(&format!("{n:020}.seg")),
            "no warning for {n}: {err}"
        );
    }
    assert!(
        err.lines().all(|l| l.starts_with("lineagectl: warning: ")),
        "{err}"
    );
    let indices: Vec<u64> = json_lines(&o)
        .iter()
        .map(|l| l["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, vec![0, 1, 6, 7, 8]);
}

#[test]
fn an_empty_directory_prints_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    SegmentStore::create(tmp.path()).unwrap();
    let o = lineagectl(&["entries", tmp.path().to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("no segment files"));
}

#[test]
fn schema_2_events_print_in_the_canonical_json_mapping() {
    use lineage_proto::{payload, timestamp::Timestamp, v1};
    let tmp = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(tmp.path()).unwrap();
    let mut w = ChainWriter::new(HostId([7; 16]));
    let ev = v1::Event {
        time_ns: 12_345_678_901,
        wall_time: Some(Timestamp::from_unix_ns(1_764_504_000_000_000_007)),
        pid: 41,
        tgid: 40,
        exec_id: "b-40-7".into(),
        comm: "true".into(),
        uid: Some(0),
        kind: Some(v1::event::Kind::Exec(v1::Exec {
            binary: "/bin/true".into(),
            argv: vec!["true".into(), "a b".into()],
            args_captured: true,
            cgroup_id: 1 << 40,
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut bytes = Vec::new();
    payload::encode(&ev, &mut bytes);
    w.append_event(payload::SCHEMA_PROTOBUF, &bytes).unwrap();
    w.append_event(payload::SCHEMA_PROTOBUF, &[0xff, 0xff])
        .unwrap();
    store
        .write(&w.seal(1, &SecretKey::from_seed([3; 32])))
        .unwrap();

    let o = lineagectl(&["entries", tmp.path().to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json_lines(&o);
    assert_eq!(
        v[0],
        serde_json::json!({
            "index": 0, "segment": 0, "kind": "EVENT", "schema": 2,
            "event": {
                "time_ns": "12345678901",
                "wall_time": "2025-11-30T12:00:00.000000007Z",
                "pid": 41, "tgid": 40, "exec_id": "b-40-7", "uid": 0, "comm": "true",
                "exec": {
                    "binary": "/bin/true", "argv": ["true", "a b"], "args_captured": true,
                    "cgroup_id": "1099511627776"
                }
            }
        })
    );
    let back: v1::Event = serde_json::from_value(v[0]["event"].clone()).unwrap();
    assert_eq!(back, ev, "the JSON reads back as the same message");
    assert!(v[1].get("event").is_none(), "{}", v[1]);
    assert_eq!(v[1]["payload_hex"], "ffff");
}

/// A log written by agents before typed events (schema 1, including the kinds added for
/// io_uring, 32-bit and security syscalls) followed by schema 2 events from a newer agent:
/// it verifies under the agent's key, and `tree --store` reads both schemas as one history.
#[test]
fn a_schema_1_log_still_verifies_and_reads_beside_schema_2() {
    use lineage_proto::{payload, v1};
    let tmp = tempfile::tempdir().unwrap();
    let o = lineagectl(&["keygen", "--out", tmp.path().join("k").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let key = SecretKey::load(&tmp.path().join("k.key")).unwrap();
    let log = tmp.path().join("log");
    let store = SegmentStore::create(&log).unwrap();
    let mut w = ChainWriter::new(HostId([7; 16]));
    // Lines exactly as the schema 1 agent printed them.
    for line in [
        r#"{"time_ns":100,"pid":50,"tgid":50,"exec_id":"b-50-100","parent_exec_id":"b-1-1","cpu":0,"seq":1,"kind":"exec","binary":"/bin/sh","filename":"/bin/sh","argv":["sh","-c","x"],"args_truncated":false,"comm":"sh","ppid":1,"uid":0,"gid":0,"euid":0,"egid":0,"cgroup_id":7,"args_captured":true}"#,
        r#"{"time_ns":110,"pid":50,"tgid":50,"exec_id":"b-50-100","cpu":0,"seq":2,"kind":"file","op":"mkdir","io_uring":{"opcode":"mkdirat","user_data":3,"ring":"0xffff"},"path":"/tmp/d","path_resolved":"/tmp/d","flags":0,"mode":448,"truncated":false}"#,
        r#"{"time_ns":120,"pid":50,"tgid":50,"exec_id":"b-50-100","cpu":0,"seq":3,"kind":"syscall","op":"setns","syscall":"setns","nr":308,"args":[4,67108864,0,0,0,0],"result":0}"#,
    ] {
        w.append_event(payload::SCHEMA_JSON, line.as_bytes())
            .unwrap();
    }
    store.write(&w.seal(0, &key)).unwrap();
    let exit = v1::Event {
        time_ns: 130,
        pid: 50,
        tgid: 50,
        exec_id: "b-50-100".into(),
        kind: Some(v1::event::Kind::Exit(v1::Exit {
            code: Some(0),
            process: true,
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut bytes = Vec::new();
    payload::encode(&exit, &mut bytes);
    w.append_event(payload::SCHEMA_PROTOBUF, &bytes).unwrap();
    store.write(&w.seal(1, &key)).unwrap();

    let public = tmp.path().join("k.pub");
    let log = log.to_str().unwrap();
    let o = lineagectl(&["verify", log, "--key", public.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    let o = lineagectl(&["tree", "b-50-100", "--store", log, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let tree: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let text = tree.to_string();
    for seen in [
        r#""argv":["sh","-c","x"]"#,
        r#""mkdir":{"#,
        r#""opcode":"mkdirat""#,
        r#""setns":{"#,
        r#""nstype":"67108864""#,
        r#""exit":{"code":0,"process":true}"#,
    ] {
        assert!(text.contains(seen), "{seen} not in {text}");
    }
}
