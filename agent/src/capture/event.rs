//! The lineage events the agent produces: a record joined with the process table.

use serde::Serialize;

use crate::capture::lineage::{ExecId, Origin};

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Boot-time clock (ns) of the kernel record; the snapshot uses the time it was read.
    pub time_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    /// The acting image (for exec: the new one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<ExecId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_exec_id: Option<ExecId>,
    /// Nearest first; empty when the parent is unknown.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<ExecId>,
    /// The container (runtime, id, pod uid) of the acting process, when it runs in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<std::sync::Arc<crate::capture::lineage::Container>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Real and effective credentials of the acting task when the kernel made the record
    /// (absent for snapshot and loss events, which no task made).
    #[serde(flatten)]
    pub creds: Option<Creds>,
    #[serde(flatten)]
    pub detail: Detail,
}

/// Real and effective user and group ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
}

impl Creds {
    pub fn of(h: &lineage_common::RecordHeader) -> Self {
        Creds {
            uid: h.uid,
            gid: h.gid,
            euid: h.euid,
            egid: h.egid,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detail {
    Exec {
        /// The executed file's path, resolved by the kernel from `mm->exe_file` (for a script:
        /// its interpreter).
        binary: String,
        /// The executed file's device (`major:minor`) and inode.
        dev: String,
        ino: u64,
        /// The file was unlinked when it ran (a memfd, a deleted binary).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        binary_deleted: bool,
        /// The filename as the caller passed it (the kernel's copy; may be relative,
        /// `/dev/fd/N`, a script).
        filename: String,
        /// argv from the new image's memory (the kernel's copy).
        argv: Vec<String>,
        args_truncated: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        previous_exec_id: Option<ExecId>,
        comm: String,
        ppid: u32,
        cgroup_id: u64,
        /// False when argv could not be read from the new image.
        args_captured: bool,
        /// The exec was called through the 32-bit (`int 0x80`) entry.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        compat: bool,
        /// Audit login uid (`auid`): the user who logged in, kept across su/sudo; absent when
        /// unset.
        #[serde(skip_serializing_if = "Option::is_none")]
        loginuid: Option<u32>,
        /// Audit session id; absent when unset.
        #[serde(skip_serializing_if = "Option::is_none")]
        sessionid: Option<u32>,
        /// Controlling terminal (e.g. `pts/3`); absent without one.
        #[serde(skip_serializing_if = "Option::is_none")]
        tty: Option<String>,
    },
    ExecFailed {
        filename: String,
        argv: Vec<String>,
        errno: i32,
        error: &'static str,
    },
    Fork {
        child_pid: u32,
        child_tgid: u32,
        thread: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        child_exec_id: Option<ExecId>,
        clone_flags: u64,
    },
    Exit {
        /// The process's exit status when it exited normally.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u32>,
        /// The terminating signal when it was killed.
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<u32>,
        core_dumped: bool,
        /// True when the whole process ended (the last thread exited).
        process: bool,
    },
    /// A file syscall (native or 32-bit) or io_uring request and its outcome.
    File {
        /// `open`, `unlink`, `rename`, `chmod`, `chown`, `link`, `symlink`, `mkdir`, `rmdir`,
        /// `mknod`, `truncate`, `setxattr`, `removexattr` or `utimes`.
        op: &'static str,
        /// The syscall by name (`openat`, `fchmod`, ...); absent for io_uring requests.
        #[serde(skip_serializing_if = "Option::is_none")]
        syscall: Option<&'static str>,
        /// Through the 32-bit (`int 0x80`) entry: `syscall` is an i386 one.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        compat: bool,
        /// Submitted through io_uring rather than a syscall.
        #[serde(skip_serializing_if = "Option::is_none")]
        io_uring: Option<IoUringOp>,
        /// The call named an fd, not a path (`fchmod`, `ftruncate`, `fsetxattr`, ...): the fd.
        #[serde(skip_serializing_if = "Option::is_none")]
        on_fd: Option<i32>,
        /// mknod: the device number; truncate: the new length.
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        length: Option<u64>,
        /// The absolute path. With `path_source` `file`, the opened file's own path from the
        /// kernel (fd → struct file → mount + dentry walk). With `dir+name`, the directory the
        /// name is relative to as the kernel resolved it, joined with the name as given and
        /// normalised lexically (`.`, `..`, `//`). With `name`, the name as given, normalised.
        path: String,
        /// `file`, `dir+name` or `name` (see `path`).
        path_source: &'static str,
        /// The name as the caller passed it, when it differs from `path`: evidence of intent,
        /// read from the caller's memory at syscall exit.
        #[serde(skip_serializing_if = "Option::is_none")]
        path_given: Option<String>,
        /// The opened file's device (`major:minor`) and inode (`path_source` `file` only).
        #[serde(skip_serializing_if = "Option::is_none")]
        dev: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ino: Option<u64>,
        /// The opened file was unlinked at the time (O_TMPFILE, deleted, memfd).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        deleted: bool,
        /// rename/link: the new path; symlink: the link created (`path` is its target text);
        /// setxattr/removexattr: the attribute name. As passed, and resolved when a path.
        #[serde(skip_serializing_if = "Option::is_none")]
        path2: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        path2_given: Option<String>,
        /// Raw syscall flags (open flags, unlinkat/renameat2/fchownat flags).
        flags: u32,
        /// open: the flags by name, e.g. `O_WRONLY|O_CREAT`.
        #[serde(skip_serializing_if = "Option::is_none")]
        flags_text: Option<String>,
        /// open with O_CREAT and chmod: the mode.
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        /// chown: target ids (absent: unchanged).
        #[serde(skip_serializing_if = "Option::is_none")]
        owner_uid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        owner_gid: Option<u32>,
        /// open: the new fd.
        #[serde(skip_serializing_if = "Option::is_none")]
        fd: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'static str>,
        /// A path was longer than the capture limit (or unreadable).
        truncated: bool,
    },
    /// An outgoing connection attempt.
    Connect {
        fd: i32,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        compat: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        io_uring: Option<IoUringOp>,
        /// `inet`, `inet6`, `unix` or `unknown`.
        family: &'static str,
        /// IP address (inet/inet6).
        #[serde(skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// Unix socket path (abstract sockets start with `@`).
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// `ok`, `in_progress` (non-blocking, not yet connected) or `error`.
        result: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'static str>,
    },
    /// An accepted connection.
    Accept {
        /// The listening socket's fd.
        fd: i32,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        compat: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        io_uring: Option<IoUringOp>,
        family: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        peer_address: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        peer_port: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        local_address: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        local_port: Option<u16>,
        /// The accepted connection's fd.
        #[serde(skip_serializing_if = "Option::is_none")]
        new_fd: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'static str>,
    },
    /// `bind`, `listen`, or a datagram sent to a peer new to the socket (`send`).
    Socket {
        /// `bind`, `listen` or `send`.
        op: &'static str,
        fd: i32,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        compat: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        io_uring: Option<IoUringOp>,
        family: &'static str,
        /// bind: the address asked for; listen: the bound address; send: the destination.
        #[serde(skip_serializing_if = "Option::is_none")]
        address: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// listen: the backlog.
        #[serde(skip_serializing_if = "Option::is_none")]
        backlog: Option<u32>,
        /// The call's return value (send: bytes sent).
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'static str>,
    },
    /// An io_uring request of an opcode that is recorded but not decoded (socket creation,
    /// passthrough commands), or one `prep` refused before it ran.
    IoUringRequest {
        io_uring: IoUringOp,
        #[serde(skip_serializing_if = "Option::is_none")]
        fd: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'static str>,
    },
    /// An io_uring instance created (`io_uring_setup`) or a registration on it.
    IoUringSetup {
        /// `create` or `register`.
        op: &'static str,
        /// The ring's kernel address, as the requests on it name it.
        ring: String,
        /// create: the ring fd and sizes.
        #[serde(skip_serializing_if = "Option::is_none")]
        fd: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sq_entries: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cq_entries: Option<u32>,
        /// create: `IORING_SETUP_*` flags; register: the `IORING_REGISTER_*` opcode.
        #[serde(skip_serializing_if = "Option::is_none")]
        setup_flags: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        register_opcode: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<i64>,
    },
    /// Credential changes, ptrace, module load/unload, bpf(), mounts, namespaces, memfd, and
    /// 32-bit syscalls that are kept raw.
    Syscall {
        /// `creds`, `capset`, `ptrace`, `module_load`, `module_unload`, `bpf`, `mount`,
        /// `umount`, `pivot_root`, `unshare`, `setns`, `memfd_create` or `compat_other`.
        op: &'static str,
        /// The syscall by name, and its number in the table `compat` selects.
        syscall: &'static str,
        nr: u32,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        compat: bool,
        /// The raw arguments (bpf: the command, then the first words of `union bpf_attr`).
        args: Vec<u64>,
        result: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        errno: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'static str>,
        /// creds/capset: `[uid, gid, suid, sgid, euid, egid, fsuid, fsgid]` before and after,
        /// and the effective capability sets.
        #[serde(skip_serializing_if = "Option::is_none")]
        old_ids: Option<[u32; 8]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        new_ids: Option<[u32; 8]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        old_caps: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        new_caps: Option<u64>,
        /// mount: the source; pivot_root: the new root; module_load: the parameters;
        /// module_unload and memfd_create: the name; bpf: the program or map name.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// mount and umount: the target; pivot_root: put_old.
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    /// A signal aimed at the agent (an attempt to stop or pause the recorder), by its sender.
    SignalToAgent {
        signal: i32,
        /// `si_code` (0 = `SI_USER`, from kill(2); -6 = `SI_TKILL`).
        si_code: i32,
        target_pid: i32,
        /// The kernel's `TRACE_SIGNAL_*` result: 0 delivered, 1 ignored, ...
        result: i32,
    },
    /// A task changed its comm (prctl PR_SET_NAME or /proc/PID/comm).
    CommChange {
        target_pid: u32,
        old_comm: String,
        new_comm: String,
    },
    /// A process found running when the agent started.
    Snapshot {
        binary: String,
        argv: Vec<String>,
        comm: String,
        origin: Origin,
    },
    /// Records that never arrived: a per-CPU sequence range and the kernel's counters.
    Loss {
        loss_cpu: u32,
        ranges: Vec<(u64, u64)>,
        missing: u64,
        /// New reservation failures by record kind name.
        failures: Vec<(&'static str, u64)>,
        /// All reservation failures on that CPU since the programs were loaded.
        failures_total: u64,
        unexplained: u64,
    },
}

impl Detail {
    pub fn kind(&self) -> &'static str {
        match self {
            Detail::Exec { .. } => "exec",
            Detail::ExecFailed { .. } => "exec_failed",
            Detail::Fork { .. } => "fork",
            Detail::Exit { .. } => "exit",
            Detail::Snapshot { .. } => "snapshot",
            Detail::Loss { .. } => "loss",
            Detail::File { .. } => "file",
            Detail::Connect { .. } => "connect",
            Detail::Accept { .. } => "accept",
            Detail::Socket { .. } => "socket",
            Detail::IoUringRequest { .. } => "io_uring_request",
            Detail::IoUringSetup { .. } => "io_uring_setup",
            Detail::Syscall { .. } => "syscall",
            Detail::SignalToAgent { .. } => "signal_to_agent",
            Detail::CommChange { .. } => "comm_change",
        }
    }
}

/// How an io_uring request was submitted: what the ring's CQE and SQE say about it.
#[derive(Debug, Clone, Serialize)]
pub struct IoUringOp {
    /// `IORING_OP_*` by name (`openat`, `connect`, ...).
    pub opcode: &'static str,
    pub user_data: u64,
    /// The ring's kernel address (joins the request to its `io_uring_setup` event).
    pub ring: String,
    /// Submitted by the SQPOLL kernel thread.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sq_thread: bool,
    /// `fd` is an index into the ring's registered files, not a process fd.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fixed_file: bool,
    /// `prep` refused the request: only the opcode and the error are known.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    /// The kernel's copy of the path or address could not be read (BTF lacked the request
    /// structs): only the opcode, fd and result are known.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub undecoded: bool,
    /// No completion was seen (the agent stopped or too many requests were in flight).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
}

/// Splits a kernel `exit_code` into (status, signal, core dumped).
pub fn split_exit_code(raw: u32) -> (Option<u32>, Option<u32>, bool) {
    let signal = raw & 0x7f;
    if signal == 0 {
        (Some((raw >> 8) & 0xff), None, false)
    } else {
        (None, Some(signal), raw & 0x80 != 0)
    }
}

/// Symbolic name of the errnos exec can return.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ELOOP => "ELOOP",
        libc::EAGAIN => "EAGAIN",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ELIBBAD => "ELIBBAD",
        libc::EEXIST => "EEXIST",
        libc::EBUSY => "EBUSY",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EXDEV => "EXDEV",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EBADF => "EBADF",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ECONNRESET => "ECONNRESET",
        libc::EALREADY => "EALREADY",
        libc::EISCONN => "EISCONN",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_split() {
        assert_eq!(split_exit_code(3 << 8), (Some(3), None, false));
        assert_eq!(split_exit_code(9), (None, Some(9), false));
        assert_eq!(split_exit_code(0x80 | 11), (None, Some(11), true));
        assert_eq!(split_exit_code(0), (Some(0), None, false));
    }
}
