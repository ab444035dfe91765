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
                        truncated,
                        on_fd: None,
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
                        on_fd: owner_uid.map(|u| u as i32),
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
        prop::sample::select(later_kinds()),
    ]
}

/// One event of each kind added after the first typed release, every field set (so a field
/// that does not survive an encoding shows).
fn later_kinds() -> Vec<Kind> {
    let call = || {
        Some(SyscallCall {
            nr: 308,
            args: vec![3, 0x4000_0000, u64::MAX],
            result: -1,
            errno: Some(1),
            error: "EPERM".into(),
        })
    };
    let ids = |b: u32| {
        Some(Ids {
            uid: b,
            gid: b + 1,
            suid: b + 2,
            sgid: b + 3,
            euid: b + 4,
            egid: b + 5,
            fsuid: b + 6,
            fsgid: b + 7,
        })
    };
    let creds = || Credentials {
        call: call(),
        old_ids: ids(1000),
        new_ids: ids(0),
        old_caps: 0,
        new_caps: u64::MAX >> 23,
    };
    let sock = |backlog| SocketOp {
        fd: 4,
        family: "inet6".into(),
        address: "::1".into(),
        port: Some(8443),
        path: "@abs".into(),
        backlog,
        result: Some(-98),
        errno: Some(98),
        error: "EADDRINUSE".into(),
    };
    let xattr = || Xattr {
        path: "f".into(),
        path_resolved: "/f".into(),
        name: "user.x".into(),
        flags: 1,
        errno: Some(61),
        error: "ENODATA".into(),
        truncated: true,
        on_fd: Some(5),
    };
    let module = |name: &str| Module {
        call: call(),
        name: name.into(),
    };
    vec![
        Kind::Link(Link {
            path: "a".into(),
            path_resolved: "/a".into(),
            new_path: "b".into(),
            new_path_resolved: "/b".into(),
            flags: 0x1000,
            errno: Some(17),
            error: "EEXIST".into(),
            truncated: true,
            on_fd: Some(3),
        }),
        Kind::Symlink(Symlink {
            target: "../t".into(),
            path: "l".into(),
            path_resolved: "/d/l".into(),
            errno: Some(17),
            error: "EEXIST".into(),
            truncated: true,
        }),
        Kind::Mkdir(Mkdir {
            path: "d".into(),
            path_resolved: "/d".into(),
            mode: 0o755,
            errno: Some(17),
            error: "EEXIST".into(),
            truncated: true,
        }),
        Kind::Rmdir(Rmdir {
            path: "d".into(),
            path_resolved: "/d".into(),
            flags: 0x200,
            errno: Some(39),
            error: "ENOTEMPTY".into(),
            truncated: true,
        }),
        Kind::Mknod(Mknod {
            path: "n".into(),
            path_resolved: "/n".into(),
            mode: 0o20644,
            device: 0x103,
            errno: Some(1),
            error: "EPERM".into(),
            truncated: true,
        }),
        Kind::Truncate(Truncate {
            path: String::new(),
            path_resolved: "/f".into(),
            length: 1 << 40,
            errno: Some(27),
            error: "EFBIG".into(),
            truncated: true,
            on_fd: Some(6),
        }),
        Kind::Setxattr(xattr()),
        Kind::Removexattr(xattr()),
        Kind::Utimes(Utimes {
            path: String::new(),
            path_resolved: "/f".into(),
            flags: 0x1000,
            errno: Some(9),
            error: "EBADF".into(),
            truncated: true,
            on_fd: Some(7),
        }),
        Kind::Bind(sock(None)),
        Kind::Listen(sock(Some(128))),
        Kind::Send(sock(None)),
        Kind::IoUringRequest(IoUringRequest {
            fd: Some(-1),
            result: Some(-22),
            errno: Some(22),
            error: "EINVAL".into(),
        }),
        Kind::IoUringSetup(IoUringSetup {
            op: "create".into(),
            ring: "ffff8881".into(),
            fd: Some(3),
            sq_entries: Some(8),
            cq_entries: Some(16),
            setup_flags: Some(2),
            register_opcode: Some(1),
            result: Some(3),
        }),
        Kind::Creds(creds()),
        Kind::Capset(creds()),
        Kind::Ptrace(Ptrace {
            call: call(),
            request: 0x4206,
            target_pid: 77,
            addr: 1,
            data: 2,
        }),
        Kind::ModuleLoad(module("debug=1")),
        Kind::ModuleUnload(module("dummy")),
        Kind::Bpf(Bpf {
            call: call(),
            command: 5,
            name: "prog".into(),
        }),
        Kind::Mount(Mount {
            call: call(),
            source: "tmpfs".into(),
            target: "/mnt".into(),
            flags: 0x1000,
        }),
        Kind::Umount(Umount {
            call: call(),
            target: "/mnt".into(),
            flags: 2,
        }),
        Kind::PivotRoot(PivotRoot {
            call: call(),
            new_root: "/new".into(),
            put_old: "/new/old".into(),
        }),
        Kind::Unshare(Unshare {
            call: call(),
            flags: 0x2000_0000,
        }),
        Kind::Setns(Setns {
            call: call(),
            fd: 9,
            nstype: 0x4000_0000,
        }),
        Kind::MemfdCreate(MemfdCreate {
            call: call(),
            name: "x".into(),
            flags: 1,
        }),
        Kind::CompatOther(CompatSyscall { call: call() }),
        Kind::SignalToAgent(SignalToAgent {
            signal: 19,
            si_code: -6,
            target_pid: 42,
            result: 1,
        }),
        Kind::CommChange(CommChange {
            target_pid: 42,
            old_comm: "sh".into(),
            new_comm: "kworker/0:1".into(),
        }),
        Kind::Enforcement(Enforcement {
            action: "would-deny".into(),
            reason: "rule".into(),
            rule_id: 7,
            target: "connect".into(),
            filename: "/bin/true".into(),
            address: "10.0.0.1".into(),
            port: Some(443),
            cgroup_id: 99,
            heartbeat_age_ns: 1 << 33,
        }),
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
        (text(), any::<bool>(), any::<Option<(u64, bool)>>()),
        kind(),
    )
        .prop_map(
            |(
                (time_ns, wall, pid, tgid),
                (exec_id, parent_exec_id, container),
                (cpu, seq, uid, gid, comm),
                (syscall, compat, io_uring),
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
                syscall,
                compat,
                io_uring: io_uring.map(|(user_data, flag)| IoUring {
                    opcode: "openat".into(),
                    user_data,
                    ring: "ffff".into(),
                    sq_thread: flag,
                    fixed_file: !flag,
                    refused: flag,
                    undecoded: !flag,
                    incomplete: flag,
                }),
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
    for _ in 0..8000 {
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

/// Schema 1 lines of the kinds added before typed events were written (io_uring, 32-bit
/// calls, socket and security syscalls, new file operations), as those agents wrote them.
const SCHEMA1_LATER: [&str; 11] = [
    r#"{"time_ns":20,"pid":9,"tgid":9,"exec_id":"b-9-1","cpu":0,"seq":6,"kind":"file","op":"symlink","syscall":"symlinkat","compat":true,"path":"../t","path_resolved":"/t","path2":"l","path2_resolved":"/d/l","flags":0,"truncated":false}"#,
    r#"{"time_ns":21,"pid":9,"tgid":9,"exec_id":"b-9-1","cpu":0,"seq":7,"kind":"file","op":"chmod","syscall":"fchmod","on_fd":5,"path":"","path_resolved":"/f","flags":4096,"mode":420,"truncated":false}"#,
    r#"{"time_ns":22,"pid":9,"tgid":9,"exec_id":"b-9-1","cpu":0,"seq":8,"kind":"file","op":"mkdir","io_uring":{"opcode":"mkdirat","user_data":7,"ring":"ffff8881","sq_thread":true},"path":"d","path_resolved":"/d","flags":0,"mode":493,"errno":17,"error":"EEXIST","truncated":false}"#,
    r#"{"time_ns":23,"pid":9,"tgid":9,"exec_id":"b-9-1","cpu":0,"seq":9,"kind":"file","op":"setxattr","syscall":"setxattr","path":"f","path_resolved":"/f","path2":"user.x","flags":0,"truncated":false}"#,
    r#"{"time_ns":24,"pid":9,"tgid":9,"exec_id":"b-9-1","cpu":1,"seq":1,"kind":"socket","op":"listen","fd":3,"family":"inet","address":"127.0.0.1","port":8080,"backlog":128,"result":0}"#,
    r#"{"time_ns":25,"pid":9,"tgid":9,"exec_id":"b-9-1","cpu":1,"seq":2,"kind":"syscall","op":"setns","syscall":"setns","nr":308,"args":[7,1073741824,0,0,0,0],"result":-1,"errno":1,"error":"EPERM"}"#,
    r#"{"time_ns":26,"pid":9,"tgid":9,"exec_id":"b-9-1","cpu":1,"seq":3,"kind":"syscall","op":"creds","syscall":"setuid","nr":23,"compat":true,"args":[0,0,0,0,0,0],"result":0,"old_ids":[1000,1000,1000,1000,1000,1000,1000,1000],"new_ids":[0,1000,0,1000,0,1000,0,1000],"old_caps":0,"new_caps":0}"#,
    r#"{"time_ns":27,"pid":9,"tgid":9,"exec_id":"b-9-1","cpu":1,"seq":4,"kind":"io_uring_setup","op":"create","ring":"ffff8881","fd":4,"sq_entries":8,"cq_entries":16,"setup_flags":0}"#,
    r#"{"time_ns":28,"pid":9,"tgid":9,"exec_id":"b-9-1","cpu":1,"seq":5,"kind":"signal_to_agent","signal":19,"si_code":0,"target_pid":42,"result":0}"#,
    r#"{"time_ns":29,"pid":9,"tgid":9,"exec_id":"b-9-1","cpu":1,"seq":6,"kind":"comm_change","target_pid":9,"old_comm":"sh","new_comm":"kworker"}"#,
    r#"{"time_ns":30,"pid":9,"tgid":9,"exec_id":"b-9-1","cpu":1,"seq":7,"kind":"syscall","op":"mount","syscall":"mount","nr":165,"args":[1,2,3,4096,0,0],"result":0,"name":"tmpfs","target":"/mnt"}"#,
];

#[test]
fn later_schema1_kinds_read_with_their_fields() {
    let evs: Vec<Event> = SCHEMA1_LATER
        .iter()
        .map(|l| decode(SCHEMA_JSON, l.as_bytes()).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let kinds: Vec<&str> = evs
        .iter()
        .map(|e| e.kind.as_ref().unwrap().name())
        .collect();
    assert_eq!(
        kinds,
        [
            "symlink",
            "chmod",
            "mkdir",
            "setxattr",
            "listen",
            "setns",
            "creds",
            "io_uring_setup",
            "signal_to_agent",
            "comm_change",
            "mount"
        ]
    );
    assert_eq!(
        (evs[0].syscall.as_str(), evs[0].compat),
        ("symlinkat", true)
    );
    assert!(
        matches!(&evs[0].kind, Some(Kind::Symlink(s)) if s.target == "../t" && s.path == "l" && s.path_resolved == "/d/l")
    );
    assert!(
        matches!(&evs[1].kind, Some(Kind::Chmod(c)) if c.on_fd == Some(5) && c.mode == 0o644 && c.path_resolved == "/f")
    );
    let u = evs[2].io_uring.as_ref().unwrap();
    assert_eq!(
        (u.opcode.as_str(), u.user_data, u.sq_thread),
        ("mkdirat", 7, true)
    );
    assert!(matches!(&evs[2].kind, Some(Kind::Mkdir(m)) if m.mode == 0o755 && m.errno == Some(17)));
    assert!(matches!(&evs[3].kind, Some(Kind::Setxattr(x)) if x.name == "user.x"));
    assert!(
        matches!(&evs[4].kind, Some(Kind::Listen(l)) if l.backlog == Some(128) && l.port == Some(8080) && l.result == Some(0))
    );
    let Some(Kind::Setns(n)) = &evs[5].kind else {
        panic!("{:?}", evs[5])
    };
    assert_eq!((n.fd, n.nstype), (7, 0x4000_0000));
    let c = n.call.as_ref().unwrap();
    assert_eq!((c.nr, c.result, c.errno), (308, -1, Some(1)));
    assert_eq!(c.args.len(), 6);
    let Some(Kind::Creds(cr)) = &evs[6].kind else {
        panic!("{:?}", evs[6])
    };
    assert!(evs[6].compat);
    assert_eq!(
        (
            cr.old_ids.as_ref().unwrap().euid,
            cr.new_ids.as_ref().unwrap().euid
        ),
        (1000, 0)
    );
    assert!(
        matches!(&evs[7].kind, Some(Kind::IoUringSetup(s)) if s.op == "create" && s.sq_entries == Some(8))
    );
    assert!(
        matches!(&evs[8].kind, Some(Kind::SignalToAgent(s)) if s.signal == 19 && s.target_pid == 42)
    );
    assert!(matches!(&evs[9].kind, Some(Kind::CommChange(c)) if c.new_comm == "kworker"));
    assert!(
        matches!(&evs[10].kind, Some(Kind::Mount(m)) if m.source == "tmpfs" && m.target == "/mnt" && m.flags == 4096)
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
