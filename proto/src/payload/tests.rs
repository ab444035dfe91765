use proptest::prelude::*;
use proptest::strategy::ValueTree as _;

use super::*;
use crate::timestamp::Timestamp;
use crate::v1::{event::Kind, *};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z/._ -]{1,24}", any::<String>()]
}

fn errno() -> impl Strategy<Value = (Option<i32>, String)> {
    prop_oneof![
        Just((None, String::new())),
        (1..140i32, "E[A-Z]{2,8}").prop_map(|(e, s)| (Some(e), s))
    ]
}

/// Every kind event.proto defines, with arbitrary field values.
fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        (
            (text(), text(), prop::collection::vec(text(), 0..4)),
            (any::<bool>(), any::<bool>(), text()),
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>())
        )
            .prop_map(
                |((binary, filename, argv), (t, c, prev), (ppid, euid, egid, cg))| {
                    Kind::Exec(Exec {
                        binary,
                        filename,
                        argv,
                        args_truncated: t,
                        args_captured: c,
                        previous_exec_id: prev,
                        ppid,
                        euid,
                        egid,
                        cgroup_id: cg,
                    })
                }
            ),
        (
            text(),
            prop::collection::vec(text(), 0..3),
            any::<i32>(),
            text()
        )
            .prop_map(
                |(filename, argv, errno, error)| Kind::ExecFailed(ExecFailed {
                    filename,
                    argv,
                    errno,
                    error
                })
            ),
        (
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            text(),
            any::<u64>()
        )
            .prop_map(
                |(child_pid, child_tgid, thread, child_exec_id, clone_flags)| Kind::Fork(Fork {
                    child_pid,
                    child_tgid,
                    thread,
                    child_exec_id,
                    clone_flags
                })
            ),
        (
            any::<Option<u32>>(),
            any::<Option<u32>>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(code, signal, core_dumped, process)| Kind::Exit(Exit {
                code,
                signal,
                core_dumped,
                process
            })),
        (text(), prop::collection::vec(text(), 0..3))
            .prop_map(|(binary, argv)| Kind::Snapshot(Snapshot { binary, argv })),
        (
            any::<u32>(),
            prop::collection::vec((any::<u64>(), any::<u64>()), 0..3),
            any::<u64>(),
            prop::collection::vec(("[a-z_]{1,10}", any::<u64>()), 0..3),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(cpu, ranges, missing, failures, total, unexplained)| {
                Kind::Loss(Loss {
                    cpu,
                    ranges: ranges
                        .into_iter()
                        .map(|(start, end)| SeqRange { start, end })
                        .collect(),
                    missing,
                    failures: failures
                        .into_iter()
                        .map(|(kind, count)| KindCount { kind, count })
                        .collect(),
                    failures_total: total,
                    unexplained,
                })
            }),
        (
            (text(), text(), any::<u32>(), text()),
            (
                any::<Option<u32>>(),
                any::<Option<i64>>(),
                errno(),
                any::<bool>()
            )
        )
            .prop_map(
                |(
                    (path, path_resolved, flags, flags_text),
                    (mode, fd, (errno, error), truncated),
                )| {
                    Kind::Open(Open {
                        path,
                        path_resolved,
                        flags,
                        flags_text,
                        mode,
                        fd,
                        errno,
                        error,
                        truncated,
                    })
                }
            ),
        (text(), text(), any::<u32>(), errno(), any::<bool>()).prop_map(
            |(path, path_resolved, flags, (errno, error), truncated)| Kind::Unlink(Unlink {
                path,
                path_resolved,
                flags,
                errno,
                error,
                truncated
            })
        ),
        (
            (text(), text(), text(), text()),
            (any::<u32>(), errno(), any::<bool>())
        )
            .prop_map(
                |(
                    (path, path_resolved, new_path, new_path_resolved),
                    (flags, (errno, error), truncated),
                )| {
                    Kind::Rename(Rename {
                        path,
                        path_resolved,
                        new_path,
                        new_path_resolved,
                        flags,
                        errno,
                        error,
                        truncated,
                    })
                }
            ),
        (
            text(),
            text(),
            any::<u32>(),
            any::<u32>(),
            errno(),
            any::<bool>()
        )
            .prop_map(
                |(path, path_resolved, mode, flags, (errno, error), truncated)| Kind::Chmod(
                    Chmod {
                        path,
                        path_resolved,
                        mode,
                        flags,
                        errno,
                        error,
                        truncated
                    }
                )
            ),
        (
            (text(), text(), any::<Option<u32>>(), any::<Option<u32>>()),
            (any::<u32>(), errno(), any::<bool>())
        )
            .prop_map(
                |(
                    (path, path_resolved, owner_uid, owner_gid),
                    (flags, (errno, error), truncated),
                )| {
                    Kind::Chown(Chown {
                        path,
                        path_resolved,
                        owner_uid,
                        owner_gid,
                        flags,
                        errno,
                        error,
                        truncated,
                    })
                }
            ),
        (
            (any::<i32>(), text(), text(), any::<Option<u32>>()),
            (text(), text(), errno())
        )
            .prop_map(
                |((fd, family, address, port), (path, result, (errno, error)))| {
                    Kind::Connect(Connect {
                        fd,
                        family,
                        address,
                        port,
                        path,
                        result,
                        errno,
                        error,
                    })
                }
            ),
        (
            (any::<i32>(), text(), text(), any::<Option<u32>>()),
            (text(), any::<Option<u32>>(), any::<Option<i64>>(), errno())
        )
            .prop_map(
                |(
                    (fd, family, peer_address, peer_port),
                    (local_address, local_port, new_fd, (errno, error)),
                )| {
                    Kind::Accept(Accept {
                        fd,
                        family,
                        peer_address,
                        peer_port,
                        local_address,
                        local_port,
                        new_fd,
                        errno,
                        error,
                    })
                }
            ),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        (
            any::<u64>(),
            prop::option::of(0..253_402_300_799_999_999_999i128),
            any::<u32>(),
            any::<u32>(),
        ),
        (text(), text(), prop::option::of((text(), text(), text()))),
        (
            any::<Option<u32>>(),
            any::<Option<u64>>(),
            any::<Option<u32>>(),
            any::<Option<u32>>(),
            text(),
        ),
        kind(),
    )
        .prop_map(
            |(
                (time_ns, wall, pid, tgid),
                (exec_id, parent_exec_id, container),
                (cpu, seq, uid, gid, comm),
                kind,
            )| Event {
                time_ns,
                wall_time: wall.map(Timestamp::from_unix_ns),
                pid,
                tgid,
                exec_id,
                parent_exec_id,
                ancestors: Vec::new(),
                container: container.map(|(runtime, id, pod_uid)| Container {
                    runtime,
                    id,
                    pod_uid,
                }),
                cpu,
                seq,
                uid,
                gid,
                comm,
                kind: Some(kind),
            },
        )
}

proptest! {
    #[test]
    fn every_kind_survives_the_chain_encoding(ev in event()) {
        let mut bytes = Vec::new();
        encode(&ev, &mut bytes);
        prop_assert_eq!(decode(SCHEMA_PROTOBUF, &bytes).unwrap(), ev);
    }

    #[test]
    fn every_kind_survives_its_json_mapping(ev in event()) {
        let json = serde_json::to_string(&ev).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, ev);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256), schema in 0..4u16) {
        let _ = decode(schema, &bytes);
    }
}

#[test]
fn every_kind_is_generated() {
    // The strategy above must cover every kind event.proto defines: count them.
    let mut seen = std::collections::BTreeSet::new();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..2000 {
        let k = kind().new_tree(&mut runner).unwrap().current();
        seen.insert(k.name());
    }
    assert_eq!(seen.len(), KINDS.len(), "{seen:?}");
}

#[test]
fn json_uses_proto_names_and_string_u64() {
    let ev = Event {
        time_ns: 5,
        wall_time: Some(Timestamp::from_unix_ns(1_764_504_000_123_456_789)),
        tgid: 7,
        exec_id: "b-7-5".into(),
        kind: Some(Kind::Exit(Exit {
            code: Some(0),
            process: true,
            ..Default::default()
        })),
        ..Default::default()
    };
    let v: Value = serde_json::to_value(&ev).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "time_ns": "5",
            "wall_time": "2025-11-30T12:00:00.123456789Z",
            "tgid": 7,
            "exec_id": "b-7-5",
            "exit": {"code": 0, "process": true},
        })
    );
}

/// Lines exactly as agents before typed events wrote them (schema 1).
const SCHEMA1: [&str; 6] = [
    r#"{"time_ns":2959455983972,"pid":4100,"tgid":4100,"exec_id":"de737098-4100-2959455983972","parent_exec_id":"de737098-4000-1","container":{"runtime":"containerd","id":"abc","pod_uid":"p-1"},"cpu":1,"seq":42,"kind":"exec","binary":"/usr/bin/git","filename":"git","argv":["git","status"],"args_truncated":false,"previous_exec_id":"de737098-4100-5","comm":"git","ppid":4000,"uid":1000,"gid":1001,"euid":1000,"egid":1001,"cgroup_id":77,"args_captured":true}"#,
    r#"{"time_ns":9,"pid":1,"tgid":1,"exec_id":"b-1-1","cpu":0,"seq":3,"kind":"file","op":"rename","path":"a","path_resolved":"/a","path2":"b","path2_resolved":"/b","flags":0,"errno":2,"error":"ENOENT","truncated":false}"#,
    r#"{"time_ns":10,"pid":0,"tgid":0,"kind":"loss","loss_cpu":1,"ranges":[[5,9]],"missing":4,"failures":[["exec",3]],"failures_total":3,"unexplained":1}"#,
    r#"{"time_ns":11,"pid":8,"tgid":8,"exec_id":"b-8-1","kind":"snapshot","binary":"/bin/sh","argv":["sh"],"comm":"sh","origin":"snapshot"}"#,
    r#"{"time_ns":12,"pid":8,"tgid":8,"exec_id":"b-8-1","cpu":0,"seq":4,"kind":"exit","code":3,"core_dumped":false,"process":true}"#,
    r#"{"time_ns":13,"pid":8,"tgid":8,"exec_id":"b-8-1","cpu":0,"seq":5,"kind":"connect","fd":3,"family":"inet","address":"127.0.0.1","port":80,"result":"error","errno":111,"error":"ECONNREFUSED"}"#,
];

#[test]
fn schema1_events_read_as_the_same_message() {
    let evs: Vec<Event> = SCHEMA1
        .iter()
        .map(|l| decode(SCHEMA_JSON, l.as_bytes()).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let exec = &evs[0];
    assert_eq!(
        (
            exec.time_ns,
            exec.tgid,
            exec.uid,
            exec.gid,
            exec.comm.as_str()
        ),
        (2_959_455_983_972, 4100, Some(1000), Some(1001), "git")
    );
    assert_eq!((exec.cpu, exec.seq), (Some(1), Some(42)));
    assert_eq!(exec.container.as_ref().unwrap().pod_uid, "p-1");
    let Some(Kind::Exec(x)) = &exec.kind else {
        panic!("{exec:?}")
    };
    assert_eq!(x.argv, ["git", "status"]);
    assert_eq!((x.ppid, x.egid, x.cgroup_id), (4000, 1001, 77));
    assert!(x.args_captured);
    assert_eq!(x.previous_exec_id, "de737098-4100-5");

    let Some(Kind::Rename(r)) = &evs[1].kind else {
        panic!("{:?}", evs[1])
    };
    assert_eq!(
        (
            r.path.as_str(),
            r.new_path.as_str(),
            r.new_path_resolved.as_str()
        ),
        ("a", "b", "/b")
    );
    assert_eq!((r.errno, r.error.as_str()), (Some(2), "ENOENT"));

    let Some(Kind::Loss(l)) = &evs[2].kind else {
        panic!("{:?}", evs[2])
    };
    assert_eq!((l.cpu, l.missing, l.unexplained), (1, 4, 1));
    assert_eq!(l.ranges, [SeqRange { start: 5, end: 9 }]);
    assert_eq!(
        l.failures,
        [KindCount {
            kind: "exec".into(),
            count: 3
        }]
    );

    assert_eq!(evs[3].comm, "sh");
    assert!(matches!(&evs[3].kind, Some(Kind::Snapshot(s)) if s.argv == ["sh"]));
    assert!(matches!(&evs[4].kind, Some(Kind::Exit(x)) if x.code == Some(3) && x.process));
    assert!(
        matches!(&evs[5].kind, Some(Kind::Connect(c)) if c.port == Some(80) && c.errno == Some(111))
    );
}

#[test]
fn schema1_without_a_known_kind_is_an_error() {
    for bad in [
        r#"{"pid":1,"type":"exec"}"#,
        r#"{"kind":"bogus"}"#,
        "[1]",
        "not json",
    ] {
        assert!(decode(SCHEMA_JSON, bad.as_bytes()).is_err(), "{bad}");
    }
    assert!(matches!(
        decode(7, b"x"),
        Err(PayloadError::UnknownSchema(7))
    ));
}
