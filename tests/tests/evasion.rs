//! Evasions an unprivileged attacker can try on this machine, each of which must land on the
//! chain: file and socket operations through io_uring, 32-bit syscalls through `int 0x80`
//! (including an execve with its argv), and syscalls the agent did not hook before (link,
//! symlink, mkdir, mknod, truncate, ftruncate, fchmod 04777, fchown, setxattr, UDP sendto,
//! bind, listen). The attacker is `tests/c/evade.c`, run as nobody through setpriv; it prints
//! what the kernel returned for each action and the test compares the chain with it.

use std::{
    collections::HashMap,
    net::{TcpListener, UdpSocket},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use lineage_tests::{chain_entries, chain_events, verify, Agent};
use serde_json::Value;

/// Builds the attacker program (static, non-PIE: its data must sit below 4 GiB for 32-bit
/// pointers). gcc and liburing come from `cargo xtask setup`.
fn build_evade(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/evade.c");
    let out = dir.join("evade");
    let status = Command::new("gcc")
        .args(["-O1", "-static", "-no-pie", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-luring")
        .status()
        .expect("running gcc: install gcc and liburing-dev with `cargo xtask setup`");
    assert!(status.success(), "building {}", src.display());
    out
}

struct Attack {
    /// `name=result` lines the program printed.
    results: HashMap<String, Vec<i64>>,
    pid: u32,
}

impl Attack {
    fn result(&self, name: &str) -> i64 {
        self.results
            .get(name)
            .unwrap_or_else(|| panic!("evade printed no {name}"))[0]
    }
}

/// Runs `evade MODE DIR TCP UDP` as nobody (uid and gid 65534, no groups).
fn attack(evade: &Path, mode: &str, dir: &Path, tcp: u16, udp: u16) -> Attack {
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(evade)
        .arg(mode)
        .arg(dir)
        .arg(tcp.to_string())
        .arg(udp.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running setpriv");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "evade {mode} failed: {out:?}");
    let mut results: HashMap<String, Vec<i64>> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line.split_once('=').expect("name=result");
        results
            .entry(k.into())
            .or_default()
            .push(v.parse().unwrap());
    }
    Attack { results, pid }
}

/// Exactly one send record among `sends` (datagrams to one peer), to 127.0.0.1:`port`, with
/// the result the program saw.
fn assert_one_send(sends: &[&Value], port: u16, result: i64) {
    assert_eq!(
        sends.len(),
        1,
        "several datagrams to one peer, one record: {sends:#?}"
    );
    assert_eq!(
        (
            sends[0]["address"].as_str(),
            sends[0]["port"].as_u64(),
            sends[0]["result"].as_i64()
        ),
        (Some("127.0.0.1"), Some(u64::from(port)), Some(result))
    );
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    evade: PathBuf,
    tcp: TcpListener,
    udp: UdpSocket,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let evade = build_evade(tmp.path());
    let dir = tmp.path().canonicalize().unwrap().join("play");
    std::fs::create_dir(&dir).unwrap();
    // nobody must be able to work in it (and reach it).
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    Setup {
        dir,
        evade,
        tcp: TcpListener::bind("127.0.0.1:0").unwrap(),
        udp: UdpSocket::bind("127.0.0.1:0").unwrap(),
        _tmp: tmp,
    }
}

impl Setup {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
    fn ports(&self) -> (u16, u16) {
        (
            self.tcp.local_addr().unwrap().port(),
            self.udp.local_addr().unwrap().port(),
        )
    }
}

/// The chain's events of one process, after `lineagectl verify` passed.
fn verified_events_of(data_dir: &Path, pid: u32) -> Vec<Value> {
    let (code, report) = verify(data_dir);
    assert_eq!(code, 0, "lineagectl verify: {report:#}");
    let entries = chain_entries(data_dir);
    chain_events(&entries)
        .into_iter()
        .filter(|e| e["tgid"] == pid)
        .cloned()
        .collect()
}

fn find<'a>(events: &'a [Value], what: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    events
        .iter()
        .find(|e| pred(e))
        .unwrap_or_else(|| panic!("no {what} on the chain; the process's events: {events:#?}"))
}

/// An event's result as the kernel returned it: the fd/0, or -errno.
fn file_result(e: &Value) -> i64 {
    match e["errno"].as_i64() {
        Some(errno) => -errno,
        None => e["fd"].as_i64().unwrap_or(0),
    }
}

#[test]
fn io_uring_file_and_connect_requests_are_on_the_chain_with_kernel_paths_and_results() {
    let s = setup();
    let (tcp, udp) = s.ports();
    let agent = Agent::start(&["--print", "none"]);
    let a = attack(&s.evade, "uring", &s.dir, tcp, udp);
    let run = agent.stop();
    let events = verified_events_of(&run.data_dir, a.pid);
    let uring = |e: &Value, op: &str| e["io_uring"]["opcode"] == op;

    let open = find(&events, "io_uring openat", |e| {
        e["kind"] == "file" && uring(e, "openat")
    });
    assert_eq!(open["op"], "open");
    assert_eq!(open["path"], s.path("uring_created"));
    assert_eq!(open["flags_text"], "O_WRONLY|O_CREAT");
    assert_eq!(open["mode"], 0o640);
    assert_eq!(file_result(open), a.result("uring_openat"));
    assert_eq!(open["io_uring"]["user_data"], 1);

    let rename = find(&events, "io_uring renameat", |e| uring(e, "renameat"));
    assert_eq!(
        (
            rename["op"].as_str(),
            rename["path"].as_str(),
            rename["path2"].as_str()
        ),
        (
            Some("rename"),
            Some(s.path("uring_created").as_str()),
            Some(s.path("uring_renamed").as_str())
        )
    );
    assert_eq!(file_result(rename), a.result("uring_renameat"));

    let unlink = find(&events, "io_uring unlinkat", |e| uring(e, "unlinkat"));
    assert_eq!(unlink["op"], "unlink");
    assert_eq!(unlink["path"], s.path("uring_renamed"));
    assert_eq!(file_result(unlink), a.result("uring_unlinkat"));

    // The program overwrote its sockaddr after submitting: the chain has the kernel's copy.
    let connect = find(&events, "io_uring connect", |e| {
        e["kind"] == "connect" && uring(e, "connect")
    });
    assert_eq!(
        (connect["address"].as_str(), connect["port"].as_u64()),
        (Some("127.0.0.1"), Some(u64::from(tcp)))
    );
    assert_eq!(a.result("uring_connect"), 0);
    assert_eq!(connect["result"], "ok");

    find(&events, "the ring's creation", |e| {
        e["kind"] == "io_uring_setup" && e["op"] == "create"
    });

    // The other file opcodes: (opcode, op, path, path2, printed result).
    let base = s.path("uring_base");
    let dir = s.path("uring_dir");
    for (opcode, op, path, path2, name) in [
        ("mkdirat", "mkdir", dir.clone(), None, "uring_mkdirat"),
        (
            "symlinkat",
            "symlink",
            base.clone(),
            Some(s.path("uring_symlink")),
            "uring_symlinkat",
        ),
        (
            "linkat",
            "link",
            base.clone(),
            Some(s.path("uring_hardlink")),
            "uring_linkat",
        ),
        (
            "setxattr",
            "setxattr",
            base.clone(),
            Some("user.uring".to_string()),
            "uring_setxattr",
        ),
        ("unlinkat", "rmdir", dir.clone(), None, "uring_rmdir"),
    ] {
        let e = find(&events, opcode, |e| uring(e, opcode) && e["op"] == op);
        assert_eq!(e["path"], path.as_str(), "{e}");
        if let Some(p2) = path2 {
            assert_eq!(e["path2"], p2.as_str(), "{e}");
        }
        assert_eq!(file_result(e), a.result(name), "{e}");
    }
    let mkdir = find(&events, "mkdirat", |e| uring(e, "mkdirat"));
    assert_eq!(mkdir["mode"], 0o710);
    let ftruncate = find(&events, "ftruncate", |e| uring(e, "ftruncate"));
    assert_eq!(
        (ftruncate["op"].as_str(), ftruncate["length"].as_u64()),
        (Some("truncate"), Some(77))
    );
    assert_eq!(file_result(ftruncate), a.result("uring_ftruncate"));
    let bind = find(&events, "io_uring bind", |e| uring(e, "bind"));
    assert_eq!(
        (
            bind["op"].as_str(),
            bind["address"].as_str(),
            bind["port"].as_u64(),
            bind["result"].as_i64()
        ),
        (
            Some("bind"),
            Some("127.0.0.1"),
            Some(0),
            Some(a.result("uring_bind"))
        )
    );
    let listen = find(&events, "io_uring listen", |e| uring(e, "listen"));
    assert_eq!(
        (
            listen["op"].as_str(),
            listen["backlog"].as_u64(),
            listen["result"].as_i64()
        ),
        (Some("listen"), Some(9), Some(a.result("uring_listen")))
    );
    let sends: Vec<&Value> = events.iter().filter(|e| uring(e, "send")).collect();
    assert_one_send(&sends, udp, a.result("uring_sendto"));
}

#[test]
fn int_0x80_file_socket_and_exec_calls_are_on_the_chain_marked_compat() {
    let s = setup();
    let (tcp, udp) = s.ports();
    let agent = Agent::start(&["--print", "none"]);
    let a = attack(&s.evade, "int80", &s.dir, tcp, udp);
    let run = agent.stop();
    assert!(
        run.log.contains("ia32 emulation is enabled"),
        "the agent reports ia32 emulation at start: {}",
        run.log
    );
    let events = verified_events_of(&run.data_dir, a.pid);
    let compat_file = |op: &'static str, syscall: &'static str| {
        find(&events, &format!("32-bit {syscall}"), move |e| {
            e["kind"] == "file" && e["op"] == op && e["syscall"] == syscall && e["compat"] == true
        })
        .clone()
    };
    let open = compat_file("open", "open");
    assert_eq!(open["path"], s.path("int80_created"));
    assert_eq!(open["mode"], 0o644);
    assert_eq!(file_result(&open), a.result("int80_open"));
    let chmod = compat_file("chmod", "chmod");
    assert_eq!(
        (chmod["path"].as_str(), chmod["mode"].as_u64()),
        (Some(s.path("int80_created").as_str()), Some(0o600))
    );
    assert_eq!(file_result(&chmod), a.result("int80_chmod"));
    let rename = compat_file("rename", "rename");
    assert_eq!(rename["path2"], s.path("int80_renamed"));
    assert_eq!(file_result(&rename), a.result("int80_rename"));
    let unlink = compat_file("unlink", "unlink");
    assert_eq!(unlink["path"], s.path("int80_renamed"));
    assert_eq!(file_result(&unlink), a.result("int80_unlink"));

    let connects: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "connect" && e["compat"] == true && e["port"] == tcp)
        .collect();
    assert_eq!(
        connects.len(),
        2,
        "connect(362) and socketcall(SYS_CONNECT): {events:#?}"
    );
    for c in connects {
        assert_eq!(
            (c["address"].as_str(), c["result"].as_str()),
            (Some("127.0.0.1"), Some("ok"))
        );
    }

    // The 32-bit execve ran in a forked child: its argv came from 32-bit pointers.
    let child = a.result("int80_execve_pid") as u32;
    assert_eq!(a.result("int80_execve_status"), 0);
    let entries = chain_entries(&run.data_dir);
    let exec = chain_events(&entries)
        .into_iter()
        .find(|e| e["kind"] == "exec" && e["tgid"] == child)
        .unwrap_or_else(|| panic!("no exec of the int 0x80 child {child}"))
        .clone();
    // The binary is the file the kernel ran (/bin may be a link to /usr/bin); the name as
    // passed is kept beside it.
    let resolved = std::fs::canonicalize("/bin/true").unwrap();
    assert_eq!(exec["binary"], resolved.to_str().unwrap());
    assert_eq!(exec["filename"], "/bin/true");
    assert_eq!(exec["compat"], true);
    assert_eq!(
        exec["argv"],
        serde_json::json!(["/bin/true", "int80-execve-marker"])
    );

    for (op, syscall, path, name) in [
        ("mkdir", "mkdir", s.path("int80_dir"), "int80_mkdir"),
        ("rmdir", "rmdir", s.path("int80_dir"), "int80_rmdir"),
        ("link", "link", s.path("int80_base"), "int80_link"),
        ("symlink", "symlink", s.path("int80_base"), "int80_symlink"),
        (
            "truncate",
            "truncate",
            s.path("int80_base"),
            "int80_truncate",
        ),
    ] {
        let e = compat_file(op, syscall);
        assert_eq!(e["path"], path.as_str(), "{e}");
        assert_eq!(file_result(&e), a.result(name), "{e}");
    }
    let fchmod = compat_file("chmod", "fchmod");
    assert_eq!(fchmod["mode"], 0o2755);
    assert_eq!(file_result(&fchmod), a.result("int80_fchmod"));

    // A 32-bit call that is not decoded is still recorded, raw.
    let chroot = find(&events, "32-bit chroot", |e| {
        e["kind"] == "syscall" && e["op"] == "compat_other" && e["nr"] == 61
    });
    assert_eq!(chroot["compat"], true);
    assert_eq!(chroot["syscall"], "chroot");
    assert_eq!(chroot["result"].as_i64(), Some(a.result("int80_chroot")));
    let setuid = find(&events, "32-bit setuid32", |e| {
        e["kind"] == "syscall" && e["op"] == "creds" && e["compat"] == true
    });
    assert_eq!(setuid["syscall"], "setuid");
    assert_eq!(setuid["new_ids"][0], 65534);
}

#[test]
fn credential_mount_namespace_bpf_ptrace_memfd_signal_and_comm_changes_are_on_the_chain() {
    let s = setup();
    let agent = Agent::start(&["--print", "none"]);
    // As root: mounts, bpf() and a credential drop need the privilege they are evidence of.
    let child = Command::new(&s.evade)
        .args(["sec", s.dir.to_str().unwrap(), "0", "0"])
        .arg(agent.pid().to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "evade sec: {out:?}");
    let mut results: HashMap<String, Vec<i64>> = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line.split_once('=').unwrap();
        results
            .entry(k.into())
            .or_default()
            .push(v.parse().unwrap());
    }
    let a = Attack { results, pid };
    let agent_pid = agent.pid();
    let run = agent.stop();
    let events = verified_events_of(&run.data_dir, a.pid);
    let sys = |op: &'static str| {
        find(&events, op, move |e| {
            e["kind"] == "syscall" && e["op"] == op
        })
        .clone()
    };
    let mount = sys("mount");
    assert_eq!(
        (mount["name"].as_str(), mount["target"].as_str()),
        (Some("lineage-tmpfs"), Some(s.path("mnt").as_str()))
    );
    assert_eq!(mount["result"].as_i64(), Some(a.result("mount")));
    let setns = sys("setns");
    assert_eq!(
        (setns["args"][1].as_u64(), setns["result"].as_i64()),
        (Some(libc::CLONE_NEWUTS as u64), Some(a.result("setns")))
    );
    let umount = sys("umount");
    assert_eq!(umount["target"], s.path("mnt"));
    let memfd = sys("memfd_create");
    assert_eq!(
        (memfd["name"].as_str(), memfd["result"].as_i64()),
        (Some("lineage-memfd"), Some(a.result("memfd")))
    );
    let bpf = sys("bpf");
    assert_eq!(
        (
            bpf["name"].as_str(),
            bpf["args"][0].as_u64(),
            bpf["result"].as_i64()
        ),
        (
            Some("lineage_evade"),
            Some(0),
            Some(a.result("bpf_map_create"))
        )
    );
    // The only comm change: exec's own renaming is the exec event, not a comm change.
    let renames: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "comm_change")
        .collect();
    assert_eq!(renames.len(), 1, "{renames:#?}");
    assert_eq!(
        (
            renames[0]["old_comm"].as_str(),
            renames[0]["new_comm"].as_str()
        ),
        (Some("evade"), Some("renamed-evade"))
    );
    let signal = find(&events, "signal to the agent", |e| {
        e["kind"] == "signal_to_agent"
    });
    assert_eq!(
        (signal["signal"].as_i64(), signal["target_pid"].as_u64()),
        (Some(i64::from(libc::SIGWINCH)), Some(u64::from(agent_pid)))
    );

    // The forked child: ptrace, unshare and the credential drop with before and after.
    let child = a.result("child") as u32;
    let entries = chain_entries(&run.data_dir);
    let child_events: Vec<Value> = chain_events(&entries)
        .into_iter()
        .filter(|e| e["tgid"] == child)
        .cloned()
        .collect();
    let of = |op: &'static str| {
        find(&child_events, op, move |e| {
            e["kind"] == "syscall" && e["op"] == op
        })
        .clone()
    };
    let ptrace = of("ptrace");
    assert_eq!(
        (ptrace["args"][0].as_u64(), ptrace["result"].as_i64()),
        (Some(0), Some(0))
    );
    let unshare = of("unshare");
    assert_eq!(
        unshare["args"][0].as_u64(),
        Some((libc::CLONE_NEWNS | libc::CLONE_NEWUTS) as u64)
    );
    let creds = of("creds");
    assert_eq!(creds["syscall"], "setresuid");
    assert_eq!(
        creds["old_ids"],
        serde_json::json!([0, 0, 0, 0, 0, 0, 0, 0])
    );
    assert_eq!(
        creds["new_ids"],
        serde_json::json!([65534, 0, 65534, 0, 65534, 0, 65534, 0])
    );
}

#[test]
fn formerly_unhooked_file_and_socket_syscalls_are_on_the_chain() {
    let s = setup();
    let (tcp, udp) = s.ports();
    let agent = Agent::start(&["--print", "none"]);
    let a = attack(&s.evade, "calls", &s.dir, tcp, udp);
    let run = agent.stop();
    let events = verified_events_of(&run.data_dir, a.pid);
    let file = |op: &'static str, syscall: &'static str| {
        find(&events, syscall, move |e| {
            e["kind"] == "file" && e["op"] == op && e["syscall"] == syscall
        })
        .clone()
    };
    let f = s.path("calls_file");

    let link = file("link", "link");
    assert_eq!(
        (link["path"].as_str(), link["path2"].as_str()),
        (Some(f.as_str()), Some(s.path("calls_hardlink").as_str()))
    );
    assert_eq!(file_result(&link), a.result("link"));
    let symlink = file("symlink", "symlink");
    assert_eq!(
        (symlink["path"].as_str(), symlink["path2"].as_str()),
        (Some(f.as_str()), Some(s.path("calls_symlink").as_str()))
    );
    assert_eq!(file_result(&symlink), a.result("symlink"));
    let mkdir = file("mkdir", "mkdir");
    assert_eq!(
        (mkdir["path"].as_str(), mkdir["mode"].as_u64()),
        (Some(s.path("calls_dir").as_str()), Some(0o750))
    );
    assert_eq!(file_result(&mkdir), a.result("mkdir"));
    // glibc's mknod(3) is the mknodat syscall.
    let mknod = file("mknod", "mknodat");
    assert_eq!(
        (mknod["path"].as_str(), mknod["mode"].as_u64()),
        (Some(s.path("calls_fifo").as_str()), Some(0o010600))
    );
    assert_eq!(file_result(&mknod), a.result("mknod"));
    let truncate = file("truncate", "truncate");
    assert_eq!(
        (truncate["path"].as_str(), truncate["length"].as_u64()),
        (Some(f.as_str()), Some(4096))
    );
    assert_eq!(file_result(&truncate), a.result("truncate"));
    // fd-only calls: the fd's file is resolved through /proc while the process lives.
    let ftruncate = file("truncate", "ftruncate");
    assert_eq!(ftruncate["length"], 123);
    assert!(ftruncate["on_fd"].as_i64().is_some());
    assert_eq!(file_result(&ftruncate), a.result("ftruncate"));
    let fchmod = file("chmod", "fchmod");
    assert_eq!(fchmod["mode"], 0o4777, "the setuid bit is on the chain");
    assert!(fchmod["on_fd"].as_i64().is_some());
    assert_eq!(file_result(&fchmod), a.result("fchmod"));
    let fchown = file("chown", "fchown");
    assert_eq!(
        (fchown["owner_uid"].as_u64(), fchown["owner_gid"].as_u64()),
        (Some(65534), Some(65534))
    );
    assert_eq!(file_result(&fchown), a.result("fchown"));
    let d = s.path("calls_dir");
    for (op, syscall, path, name) in [
        ("removexattr", "removexattr", f.as_str(), "removexattr"),
        ("utimes", "utimensat", f.as_str(), "utimensat"),
        ("chown", "chown", f.as_str(), "chown"),
        ("rmdir", "rmdir", d.as_str(), "rmdir"),
    ] {
        let e = file(op, syscall);
        assert_eq!(e["path"], path, "{e}");
        assert_eq!(file_result(&e), a.result(name), "{e}");
    }
    let capset = find(&events, "capset", |e| {
        e["kind"] == "syscall" && e["op"] == "capset"
    });
    assert_eq!(capset["result"].as_i64(), Some(a.result("capset")));
    assert_eq!(capset["old_caps"], capset["new_caps"]);
    let setxattr = file("setxattr", "setxattr");
    assert_eq!(
        (setxattr["path"].as_str(), setxattr["path2"].as_str()),
        (Some(f.as_str()), Some("user.lineage"))
    );
    assert_eq!(file_result(&setxattr), a.result("setxattr"));

    // Five datagrams to one peer: one record.
    let sends: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "socket" && e["op"] == "send")
        .collect();
    assert_one_send(&sends, udp, a.result("sendto"));
    let bind = find(&events, "bind", |e| {
        e["kind"] == "socket" && e["op"] == "bind"
    });
    assert_eq!(
        (bind["address"].as_str(), bind["port"].as_u64()),
        (Some("127.0.0.1"), Some(0))
    );
    assert_eq!(bind["result"].as_i64(), Some(a.result("bind")));
    let listen = find(&events, "listen", |e| {
        e["kind"] == "socket" && e["op"] == "listen"
    });
    assert_eq!(
        (
            listen["address"].as_str(),
            listen["port"].as_i64(),
            listen["backlog"].as_u64()
        ),
        (Some("127.0.0.1"), Some(a.result("listen_port")), Some(7))
    );
    assert_eq!(listen["result"].as_i64(), Some(a.result("listen")));
}
