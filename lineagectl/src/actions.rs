//! One-line summaries of what an event did to files, sockets and the system (the kinds after
//! exec/fork/exit): the object first (path, address, target), then what matters about it,
//! then how it was asked for and how it ended — readable at a glance, unambiguous to copy.

use lineage_proto::v1::{event::Kind, Event, Ids, SyscallCall};

use crate::event::quote_arg;

/// `' → new'`, empty when `new` is.
fn arrow(new: &str) -> String {
    if new.is_empty() {
        String::new()
    } else {
        format!(" → {}", quote_arg(new))
    }
}

/// The path to show: resolved when known, else as passed, else the fd a call named.
fn path(resolved: &str, given: &str, on_fd: Option<i32>) -> String {
    match (resolved, given, on_fd) {
        ("", "", Some(fd)) => format!("fd {fd}"),
        ("", "", None) => "?".into(),
        ("", p, _) | (p, _, _) => quote_arg(p),
    }
}

/// `address:port` (IPv6 in brackets), or the Unix path, or `?`.
fn endpoint(address: &str, port: Option<u32>, unix: &str) -> String {
    match (address, port) {
        ("", _) if !unix.is_empty() => quote_arg(unix),
        ("", _) => "?".into(),
        (a, Some(p)) if a.contains(':') => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_owned(),
    }
}

/// `: ENOENT` for a failed call, empty on success.
fn outcome(errno: Option<i32>, error: &str) -> String {
    match (errno, error) {
        (None, _) => String::new(),
        (Some(_), e) if !e.is_empty() => format!(": {e}"),
        (Some(n), _) => format!(": errno {n}"),
    }
}

/// A syscall kind's result: `= 3`, or `: EPERM`.
fn call_outcome(call: Option<&SyscallCall>) -> String {
    match call {
        Some(c) if c.errno.is_some() => outcome(c.errno, &c.error),
        Some(c) => format!(" = {}", c.result),
        None => String::new(),
    }
}

/// `uid 1000→0 euid 1000→0 …`: only the ids that changed (`ids unchanged` otherwise).
fn id_changes(old: Option<&Ids>, new: Option<&Ids>) -> String {
    let (Some(o), Some(n)) = (old, new) else {
        return String::new();
    };
    let pairs = [
        ("uid", o.uid, n.uid),
        ("gid", o.gid, n.gid),
        ("suid", o.suid, n.suid),
        ("sgid", o.sgid, n.sgid),
        ("euid", o.euid, n.euid),
        ("egid", o.egid, n.egid),
        ("fsuid", o.fsuid, n.fsuid),
        ("fsgid", o.fsgid, n.fsgid),
    ];
    let changed: Vec<String> = pairs
        .iter()
        .filter(|(_, a, b)| a != b)
        .map(|(k, a, b)| format!("{k} {a}→{b}"))
        .collect();
    if changed.is_empty() {
        "ids unchanged".into()
    } else {
        changed.join(" ")
    }
}

/// How the action was asked for, when that is not the plain native syscall: ` [io_uring
/// openat]`, ` [32-bit fchmod]`.
fn via(ev: &Event) -> String {
    match (&ev.io_uring, ev.compat) {
        (Some(u), _) => {
            let mut s = format!(" [io_uring {}", u.opcode);
            for (set, what) in [
                (u.sq_thread, " sqpoll"),
                (u.refused, " refused"),
                (u.undecoded, " undecoded"),
                (u.incomplete, " no completion"),
            ] {
                if set {
                    s.push_str(what);
                }
            }
            s + "]"
        }
        (None, true) => format!(" [32-bit {}]", ev.syscall),
        (None, false) => String::new(),
    }
}

/// The summary of an event of the kinds this module knows; `None` for the others.
pub fn summary(ev: &Event) -> Option<String> {
    let what = match ev.kind.as_ref()? {
        Kind::Open(o) => {
            let flags = if o.flags_text.is_empty() {
                String::new()
            } else {
                format!(" {}", o.flags_text)
            };
            let fd = o.fd.map(|fd| format!(" fd={fd}")).unwrap_or_default();
            format!(
                "{}{flags}{fd}{}",
                path(&o.path_resolved, &o.path, None),
                outcome(o.errno, &o.error)
            )
        }
        Kind::Unlink(x) => format!(
            "{}{}",
            path(&x.path_resolved, &x.path, None),
            outcome(x.errno, &x.error)
        ),
        Kind::Rmdir(x) => format!(
            "{}{}",
            path(&x.path_resolved, &x.path, None),
            outcome(x.errno, &x.error)
        ),
        Kind::Rename(x) => format!(
            "{}{}{}",
            path(&x.path_resolved, &x.path, None),
            arrow(or(&x.new_path_resolved, &x.new_path)),
            outcome(x.errno, &x.error)
        ),
        Kind::Link(x) => format!(
            "{}{}{}",
            path(&x.path_resolved, &x.path, x.on_fd),
            arrow(or(&x.new_path_resolved, &x.new_path)),
            outcome(x.errno, &x.error)
        ),
        Kind::Symlink(x) => format!(
            "{}{}{}",
            path(&x.path_resolved, &x.path, None),
            arrow(&x.target),
            outcome(x.errno, &x.error)
        ),
        Kind::Chmod(x) => format!(
            "{} mode={:o}{}",
            path(&x.path_resolved, &x.path, x.on_fd),
            x.mode,
            outcome(x.errno, &x.error)
        ),
        Kind::Chown(x) => {
            let id = |v: Option<u32>| v.map_or("-".to_owned(), |v| v.to_string());
            format!(
                "{} owner={}:{}{}",
                path(&x.path_resolved, &x.path, x.on_fd),
                id(x.owner_uid),
                id(x.owner_gid),
                outcome(x.errno, &x.error)
            )
        }
        Kind::Mkdir(x) => format!(
            "{} mode={:o}{}",
            path(&x.path_resolved, &x.path, None),
            x.mode,
            outcome(x.errno, &x.error)
        ),
        Kind::Mknod(x) => format!(
            "{} mode={:o} device={:#x}{}",
            path(&x.path_resolved, &x.path, None),
            x.mode,
            x.device,
            outcome(x.errno, &x.error)
        ),
        Kind::Truncate(x) => format!(
            "{} length={}{}",
            path(&x.path_resolved, &x.path, x.on_fd),
            x.length,
            outcome(x.errno, &x.error)
        ),
        Kind::Setxattr(x) | Kind::Removexattr(x) => format!(
            "{} name={}{}",
            path(&x.path_resolved, &x.path, x.on_fd),
            quote_arg(&x.name),
            outcome(x.errno, &x.error)
        ),
        Kind::Utimes(x) => format!(
            "{}{}",
            path(&x.path_resolved, &x.path, x.on_fd),
            outcome(x.errno, &x.error)
        ),
        Kind::Connect(c) => format!(
            "{} {}{}",
            endpoint(&c.address, c.port, &c.path),
            c.result,
            outcome(c.errno, &c.error)
        ),
        Kind::Accept(a) => format!(
            "from {} on :{}{}",
            endpoint(&a.peer_address, a.peer_port, ""),
            a.local_port.unwrap_or_default(),
            outcome(a.errno, &a.error)
        ),
        Kind::Bind(s) | Kind::Send(s) => format!(
            "{}{}",
            endpoint(&s.address, s.port, &s.path),
            match (s.errno, s.result) {
                (None, Some(r)) if r > 0 => format!(" = {r}"),
                _ => outcome(s.errno, &s.error),
            }
        ),
        Kind::Listen(s) => format!(
            "{} backlog={}{}",
            endpoint(&s.address, s.port, &s.path),
            s.backlog.unwrap_or_default(),
            outcome(s.errno, &s.error)
        ),
        Kind::IoUringRequest(r) => format!(
            "fd={}{}",
            r.fd.map_or("-".to_owned(), |f| f.to_string()),
            outcome(r.errno, &r.error)
        ),
        Kind::IoUringSetup(s) if s.op == "create" => format!(
            "create ring {} fd={} entries={}/{}",
            s.ring,
            s.fd.unwrap_or(-1),
            s.sq_entries.unwrap_or_default(),
            s.cq_entries.unwrap_or_default()
        ),
        Kind::IoUringSetup(s) => format!(
            "{} ring {} opcode={} = {}",
            s.op,
            s.ring,
            s.register_opcode.unwrap_or_default(),
            s.result.unwrap_or_default()
        ),
        Kind::Creds(c) | Kind::Capset(c) => {
            let caps = if c.old_caps != c.new_caps {
                format!(" caps {:#x}→{:#x}", c.old_caps, c.new_caps)
            } else {
                String::new()
            };
            format!(
                "{} {}{caps}{}",
                ev.syscall,
                id_changes(c.old_ids.as_ref(), c.new_ids.as_ref()),
                call_outcome(c.call.as_ref())
            )
        }
        Kind::Ptrace(p) => format!(
            "request {:#x} pid {}{}",
            p.request,
            p.target_pid,
            call_outcome(p.call.as_ref())
        ),
        Kind::ModuleLoad(m) | Kind::ModuleUnload(m) => {
            format!("{}{}", quote_arg(&m.name), call_outcome(m.call.as_ref()))
        }
        Kind::Bpf(b) => format!(
            "command {} {}{}",
            b.command,
            quote_arg(&b.name),
            call_outcome(b.call.as_ref())
        ),
        Kind::Mount(m) => format!(
            "{} on {} flags={:#x}{}",
            quote_arg(&m.source),
            quote_arg(&m.target),
            m.flags,
            call_outcome(m.call.as_ref())
        ),
        Kind::Umount(m) => format!(
            "{} flags={:#x}{}",
            quote_arg(&m.target),
            m.flags,
            call_outcome(m.call.as_ref())
        ),
        Kind::PivotRoot(p) => format!(
            "{} (old root to {}){}",
            quote_arg(&p.new_root),
            quote_arg(&p.put_old),
            call_outcome(p.call.as_ref())
        ),
        Kind::Unshare(u) => format!("flags={:#x}{}", u.flags, call_outcome(u.call.as_ref())),
        Kind::Setns(s) => format!(
            "fd {} type={:#x}{}",
            s.fd,
            s.nstype,
            call_outcome(s.call.as_ref())
        ),
        Kind::MemfdCreate(m) => format!(
            "{} flags={:#x}{}",
            quote_arg(&m.name),
            m.flags,
            call_outcome(m.call.as_ref())
        ),
        Kind::CompatOther(c) => {
            let call = c.call.clone().unwrap_or_default();
            format!(
                "{} (i386 {}){}",
                ev.syscall,
                call.nr,
                call_outcome(Some(&call))
            )
        }
        Kind::SignalToAgent(s) => format!(
            "signal {} to the agent (pid {}), {}",
            s.signal,
            s.target_pid,
            if s.result == 0 {
                "delivered"
            } else {
                "not delivered"
            }
        ),
        Kind::CommChange(c) => format!("{}{}", quote_arg(&c.old_comm), arrow(&c.new_comm)),
        Kind::Enforcement(d) => {
            let target = if d.target == "exec" {
                format!("exec {}", quote_arg(&d.filename))
            } else {
                format!("connect {}", endpoint(&d.address, d.port, ""))
            };
            let why = if d.reason == "rule" {
                format!("rule {}", d.rule_id)
            } else {
                d.reason.clone()
            };
            format!("{} {target} ({why})", d.action.to_uppercase())
        }
        _ => return None,
    };
    Some(what + &via(ev))
}

fn or<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use lineage_proto::payload::{decode, SCHEMA_JSON};

    use super::*;

    /// Fixtures in schema 1 JSON read as the same message.
    fn line(json: &str) -> String {
        summary(&decode(SCHEMA_JSON, json.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn file_socket_and_syscall_kinds_read_on_one_line() {
        assert_eq!(
            line(
                r#"{"kind":"file","op":"rename","path":"a","path_resolved":"/d/a","path2":"b c","path2_resolved":"/d/b c","flags":0,"errno":2,"error":"ENOENT"}"#
            ),
            "/d/a → '/d/b c': ENOENT"
        );
        assert_eq!(
            line(
                r#"{"kind":"file","op":"chmod","syscall":"fchmod","compat":true,"on_fd":5,"path":"","flags":4096,"mode":2541}"#
            ),
            "fd 5 mode=4755 [32-bit fchmod]"
        );
        assert_eq!(
            line(
                r#"{"kind":"file","op":"mkdir","io_uring":{"opcode":"mkdirat","user_data":1,"ring":"0x1","incomplete":true},"path":"/tmp/d","flags":0,"mode":448}"#
            ),
            "/tmp/d mode=700 [io_uring mkdirat no completion]"
        );
        assert_eq!(
            line(
                r#"{"kind":"file","op":"symlink","path":"../t","path2":"l","path2_resolved":"/d/l","flags":0}"#
            ),
            "/d/l → ../t"
        );
        assert_eq!(
            line(
                r#"{"kind":"socket","op":"listen","fd":3,"family":"inet6","address":"::1","port":8080,"backlog":128,"result":0}"#
            ),
            "[::1]:8080 backlog=128"
        );
        assert_eq!(
            line(
                r#"{"kind":"socket","op":"send","fd":3,"family":"inet","address":"10.0.0.1","port":53,"result":40}"#
            ),
            "10.0.0.1:53 = 40"
        );
        assert_eq!(
            line(
                r#"{"kind":"syscall","op":"creds","syscall":"setresuid","nr":117,"args":[65534,65534,65534,0,0,0],"result":0,"old_ids":[0,0,0,0,0,0,0,0],"new_ids":[65534,0,65534,0,65534,0,65534,0]}"#
            ),
            "setresuid uid 0→65534 suid 0→65534 euid 0→65534 fsuid 0→65534 = 0"
        );
        assert_eq!(
            line(
                r#"{"kind":"syscall","op":"mount","syscall":"mount","nr":165,"args":[0,0,0,1,0,0],"result":-1,"errno":1,"error":"EPERM","name":"tmpfs","target":"/mnt"}"#
            ),
            "tmpfs on /mnt flags=0x1: EPERM"
        );
        assert_eq!(
            line(
                r#"{"kind":"signal_to_agent","signal":19,"si_code":0,"target_pid":42,"result":0}"#
            ),
            "signal 19 to the agent (pid 42), delivered"
        );
    }

    #[test]
    fn enforcement_decisions_say_what_was_denied_and_why() {
        use lineage_proto::v1::Enforcement;
        let ev = |d: Enforcement| Event {
            kind: Some(Kind::Enforcement(d)),
            ..Default::default()
        };
        let exec = ev(Enforcement {
            action: "deny".into(),
            reason: "rule".into(),
            rule_id: 3,
            target: "exec".into(),
            filename: "/tmp/x y".into(),
            ..Default::default()
        });
        assert_eq!(summary(&exec).unwrap(), "DENY exec '/tmp/x y' (rule 3)");
        let connect = ev(Enforcement {
            action: "would-deny".into(),
            reason: "heartbeat".into(),
            target: "connect".into(),
            address: "127.0.0.1".into(),
            port: Some(443),
            ..Default::default()
        });
        assert_eq!(
            summary(&connect).unwrap(),
            "WOULD-DENY connect 127.0.0.1:443 (heartbeat)"
        );
        assert!(summary(&Event::default()).is_none());
    }
}
