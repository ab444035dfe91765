//! Turning file and socket records into events: names for flags and families, addresses as
//! text, and relative paths resolved to absolute ones where /proc still allows it.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::{Component, Path, PathBuf},
};

use lineage_common::{file_op, net_op, path_flags, path_source, NetRecord, AT_EMPTY_PATH};

use crate::{
    capture::decode::FileOp,
    capture::event::{errno_name, Detail},
    capture::names,
};

const AT_FDCWD: i32 = -100;
const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

fn op_name(op: u32) -> &'static str {
    match op {
        file_op::OPEN => "open",
        file_op::UNLINK => "unlink",
        file_op::RENAME => "rename",
        file_op::CHMOD => "chmod",
        file_op::CHOWN => "chown",
        file_op::LINK => "link",
        file_op::SYMLINK => "symlink",
        file_op::MKDIR => "mkdir",
        file_op::RMDIR => "rmdir",
        file_op::MKNOD => "mknod",
        file_op::TRUNCATE => "truncate",
        file_op::SETXATTR => "setxattr",
        file_op::REMOVEXATTR => "removexattr",
        file_op::UTIMES => "utimes",
        _ => "unknown",
    }
}

/// `O_RDONLY|O_CREAT|...` for the flags that matter to lineage.
pub fn open_flags_text(flags: u32) -> String {
    let access = match flags & 0o3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let mut parts = vec![access];
    for (bit, name) in [
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o2000000, "O_CLOEXEC"),
        (0o20200000, "O_TMPFILE"),
    ] {
        if flags & bit == bit {
            parts.push(name);
        }
    }
    parts.join("|")
}

/// Lexically normalises an absolute path (`.` and `..`), without touching the filesystem.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// `major:minor` of a kernel `dev_t` (`MINORBITS` = 20).
pub fn dev_text(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xf_ffff)
}

/// The absolute path of a name that left no fd: joined to the directory the kernel resolved
/// (`dir`, empty when it could not), or for a relative name whose directory is unknown, to the
/// directory fd or cwd as /proc shows it now (best effort: the process may have moved on).
fn join(proc_root: &Path, tgid: u32, dirfd: i32, dir: &[u8], given: &str) -> Option<String> {
    if given.is_empty() {
        return None;
    }
    let base = if given.starts_with('/') {
        PathBuf::from("/")
    } else if !dir.is_empty() {
        PathBuf::from(String::from_utf8_lossy(dir).into_owned())
    } else {
        let link = if dirfd == AT_FDCWD {
            format!("{tgid}/cwd")
        } else {
            format!("{tgid}/fd/{dirfd}")
        };
        std::fs::read_link(proc_root.join(link)).ok()?
    };
    Some(normalize(&base.join(given)).to_string_lossy().into_owned())
}

/// The path of one side of a file record and where it came from.
fn resolved(
    proc_root: &Path,
    tgid: u32,
    source: u32,
    dirfd: i32,
    path: &[u8],
    given: &str,
) -> (String, &'static str) {
    match source {
        path_source::FILE => (String::from_utf8_lossy(path).into_owned(), "file"),
        path_source::DIR => (
            join(proc_root, tgid, dirfd, path, given).unwrap_or_else(|| given.to_owned()),
            "dir+name",
        ),
        _ => (
            join(proc_root, tgid, dirfd, &[], given).unwrap_or_else(|| given.to_owned()),
            "name",
        ),
    }
}

pub fn errno_of(result: i64) -> (Option<i32>, Option<&'static str>) {
    if result < 0 {
        let errno = (-result) as i32;
        (Some(errno), Some(errno_name(errno)))
    } else {
        (None, None)
    }
}

pub fn file_detail(f: &FileOp, proc_root: &Path) -> Detail {
    let tgid = f.header.tgid;
    let given = String::from_utf8_lossy(f.given()).into_owned();
    let on_fd = f.flags & AT_EMPTY_PATH != 0 && given.is_empty();
    let (path, path_source) = if f.op == file_op::SYMLINK {
        // symlink's first string is the link's content, not a name.
        (given.clone(), "content")
    } else {
        resolved(proc_root, tgid, f.source, f.dirfd, f.path(), &given)
    };
    let (path2, path2_given) = if file_op::has_path2(f.op) {
        let given2 = String::from_utf8_lossy(f.given2()).into_owned();
        if matches!(f.op, file_op::RENAME | file_op::LINK | file_op::SYMLINK) {
            // The second path never has an fd: its directory, or the name alone when absolute.
            let source2 = if f.path2().is_empty() || given2.starts_with('/') {
                path_source::GIVEN
            } else {
                path_source::DIR
            };
            let (p2, _) = resolved(proc_root, tgid, source2, f.dirfd2, f.path2(), &given2);
            let differs = p2 != given2;
            (Some(p2), differs.then_some(given2))
        } else {
            // An xattr name is not a path.
            (Some(given2), None)
        }
    } else {
        (None, None)
    };
    let is_open = f.op == file_op::OPEN;
    let from_file = f.source == path_source::FILE;
    let mode = match f.op {
        file_op::OPEN if f.flags & 0o100 != 0 => Some(f.mode),
        file_op::CHMOD | file_op::MKDIR | file_op::MKNOD => Some(f.mode),
        _ => None,
    };
    let id = |v: u32| (f.op == file_op::CHOWN && v != u32::MAX).then_some(v);
    let (errno, error) = errno_of(f.result);
    let (syscall, compat, _) = names::syscall(f.syscall_nr);
    Detail::File {
        op: op_name(f.op),
        syscall: Some(syscall),
        compat,
        io_uring: None,
        on_fd: on_fd.then_some(f.dirfd),
        device: (f.op == file_op::MKNOD).then_some(f.uid),
        length: (f.op == file_op::TRUNCATE).then(|| u64::from(f.uid) | u64::from(f.gid) << 32),
        path_given: (given != path).then_some(given),
        path,
        path_source,
        dev: from_file.then(|| dev_text(f.dev)),
        ino: from_file.then_some(f.ino),
        deleted: f.trunc & path_flags::PATH_DELETED != 0,
        path2,
        path2_given,
        flags: f.flags,
        flags_text: is_open.then(|| open_flags_text(f.flags)),
        mode,
        owner_uid: id(f.uid),
        owner_gid: id(f.gid),
        fd: (is_open && f.result >= 0).then_some(f.result),
        errno,
        error,
        truncated: f.trunc
            & (path_flags::PATH_TRUNCATED
                | path_flags::PATH2_TRUNCATED
                | path_flags::GIVEN_TRUNCATED
                | path_flags::PATH_UNREADABLE)
            != 0,
    }
}

fn family_name(family: u16) -> &'static str {
    match family {
        AF_INET => "inet",
        AF_INET6 => "inet6",
        AF_UNIX => "unix",
        _ => "unknown",
    }
}

fn ip_text(family: u16, bytes: &[u8]) -> Option<String> {
    match family {
        AF_INET => bytes
            .get(..4)
            .map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()),
        AF_INET6 => bytes.get(..16).map(|b| {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Ipv6Addr::from(a).to_string()
        }),
        _ => None,
    }
}

/// A Unix socket path; a leading NUL marks an abstract socket, shown with `@`.
fn unix_path(bytes: &[u8]) -> String {
    match bytes.split_first() {
        Some((0, rest)) => format!(
            "@{}",
            String::from_utf8_lossy(rest.split(|&b| b == 0).next().unwrap_or_default())
        ),
        _ => String::from_utf8_lossy(bytes.split(|&b| b == 0).next().unwrap_or_default())
            .into_owned(),
    }
}

pub fn net_detail(n: &NetRecord) -> Detail {
    let family = family_name(n.family);
    let addr = &n.addr[..(n.addr_len as usize).min(n.addr.len())];
    let (errno, error) = errno_of(n.result);
    let compat = names::syscall(n.syscall_nr).1;
    let inet = matches!(n.family, AF_INET | AF_INET6);
    match n.op {
        net_op::CONNECT => {
            let result = match n.result {
                0 => "ok",
                r if r == -(libc::EINPROGRESS as i64) => "in_progress",
                _ => "error",
            };
            Detail::Connect {
                fd: n.fd,
                compat,
                io_uring: None,
                family,
                address: if inet { ip_text(n.family, addr) } else { None },
                port: inet.then_some(n.remote_port),
                path: (n.family == AF_UNIX).then(|| unix_path(addr)),
                result,
                errno: if n.result == 0 { None } else { errno },
                error: if n.result == 0 { None } else { error },
            }
        }
        net_op::BIND | net_op::LISTEN | net_op::SEND => {
            let listen = n.op == net_op::LISTEN;
            let (ip, port) = if listen {
                (ip_text(n.family, &n.local_addr), n.local_port)
            } else {
                (ip_text(n.family, addr), n.remote_port)
            };
            Detail::Socket {
                op: match n.op {
                    net_op::BIND => "bind",
                    net_op::LISTEN => "listen",
                    _ => "send",
                },
                fd: n.fd,
                compat,
                io_uring: None,
                family,
                address: if inet { ip } else { None },
                port: inet.then_some(port),
                path: (n.family == AF_UNIX && !listen).then(|| unix_path(addr)),
                backlog: listen.then_some(u32::from(n.remote_port)),
                result: Some(n.result),
                errno,
                error,
            }
        }
        _ => {
            let ok = n.result >= 0 && inet;
            Detail::Accept {
                fd: n.fd,
                compat,
                io_uring: None,
                family,
                peer_address: if ok { ip_text(n.family, addr) } else { None },
                peer_port: ok.then_some(n.remote_port),
                local_address: if ok {
                    ip_text(n.family, &n.local_addr)
                } else {
                    None
                },
                local_port: ok.then_some(n.local_port),
                new_fd: (n.result >= 0).then_some(n.result),
                errno,
                error,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_paths() {
        assert_eq!(
            open_flags_text(0o1 | 0o100 | 0o2000000),
            "O_WRONLY|O_CREAT|O_CLOEXEC"
        );
        assert_eq!(open_flags_text(0), "O_RDONLY");
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(normalize(Path::new("/../x")), PathBuf::from("/x"));
        let proc = Path::new("/proc");
        assert_eq!(
            join(proc, 1, AT_FDCWD, b"", "/etc/../etc/passwd").as_deref(),
            Some("/etc/passwd")
        );
        assert_eq!(
            join(proc, 1, 3, b"/srv/data", "../x//y").as_deref(),
            Some("/srv/x/y")
        );
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            join(proc, me, AT_FDCWD, b"", "x/y").unwrap(),
            cwd.join("x/y").to_string_lossy()
        );
        assert_eq!(
            resolved(
                proc,
                1,
                path_source::FILE,
                AT_FDCWD,
                b"/etc/hostname",
                "//x"
            ),
            ("/etc/hostname".to_string(), "file")
        );
        assert_eq!(dev_text((8 << 20) | 3), "8:3");
    }

    #[test]
    fn addresses() {
        let mut n: NetRecord = unsafe { std::mem::zeroed() };
        n.op = net_op::CONNECT;
        n.family = AF_INET;
        n.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        n.addr_len = 4;
        n.remote_port = 8080;
        n.result = -(libc::ECONNREFUSED as i64);
        match net_detail(&n) {
            Detail::Connect {
                address,
                port,
                result,
                error,
                ..
            } => {
                assert_eq!(
                    (address.as_deref(), port, result, error),
                    (Some("127.0.0.1"), Some(8080), "error", Some("ECONNREFUSED"))
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(unix_path(b"\0abstract\0\0"), "@abstract");
        assert_eq!(unix_path(b"/run/x.sock\0garbage"), "/run/x.sock");
    }
}
