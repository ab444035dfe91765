//! Ring-buffer records. Every record starts with [`RecordHeader`] at offset 0.

use core::mem::{offset_of, size_of};

/// Bytes of argv captured per exec (NUL-separated, as the process passed them).
pub const ARGS_CAP: usize = 4096;
/// Most argv entries read per exec; more are counted as truncation.
pub const MAX_ARGS: u32 = 128;
/// Bytes of a path kept per record (the kernel allows 4096; longer ones are flagged).
pub const PATH_CAP: usize = 256;
/// `comm` length in the kernel.
pub const COMM_LEN: usize = 16;

/// Record kinds. Numbers are part of the contract and are never reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// `sys_enter_execve(at)`: the filename and argv as passed, before the kernel acts.
    ExecArgs = 1,
    /// `sched_process_exec`: the exec succeeded; identity, credentials, the resolved filename.
    Exec = 2,
    /// `sys_exit_execve(at)` with a negative return: the attempt failed with an errno.
    ExecFailed = 3,
    /// `task_newtask`: a process or thread was created.
    Fork = 4,
    /// `sched_process_exit`: a task exited.
    Exit = 5,
    /// A file syscall (open, unlink, rename, chmod, chown) with its result.
    FileOp = 6,
    /// `connect`, `accept`/`accept4`, `bind`, `listen` or a send to a new peer, with its result.
    Net = 7,
    /// `io_uring:io_uring_submit_req`: a file or network request as the kernel prepared it.
    IoUring = 8,
    /// `io_uring:io_uring_complete` of a request recorded by [`RecordKind::IoUring`].
    IoUringDone = 9,
    /// `io_uring:io_uring_create` / `io_uring:io_uring_register`.
    IoUringSetup = 10,
    /// A security-relevant syscall outside the file and socket families (credentials, ptrace,
    /// modules, bpf, mounts, namespaces, memfd), or a compat syscall that is not decoded.
    Syscall = 11,
    /// `signal:signal_generate` with the agent as the target.
    Signal = 12,
    /// `task:task_rename`: a comm change.
    CommChange = 13,
}

/// Number of slots in per-kind counter arrays (index = kind number).
pub const KIND_SLOTS: u32 = 16;

impl RecordKind {
    pub const ALL: [RecordKind; 13] = [
        RecordKind::ExecArgs,
        RecordKind::Exec,
        RecordKind::ExecFailed,
        RecordKind::Fork,
        RecordKind::Exit,
        RecordKind::FileOp,
        RecordKind::Net,
        RecordKind::IoUring,
        RecordKind::IoUringDone,
        RecordKind::IoUringSetup,
        RecordKind::Syscall,
        RecordKind::Signal,
        RecordKind::CommChange,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            RecordKind::ExecArgs => "exec_args",
            RecordKind::Exec => "exec",
            RecordKind::ExecFailed => "exec_failed",
            RecordKind::Fork => "fork",
            RecordKind::Exit => "exit",
            RecordKind::FileOp => "file",
            RecordKind::Net => "net",
            RecordKind::IoUring => "io_uring",
            RecordKind::IoUringDone => "io_uring_done",
            RecordKind::IoUringSetup => "io_uring_setup",
            RecordKind::Syscall => "syscall",
            RecordKind::Signal => "signal",
            RecordKind::CommChange => "comm_change",
        }
    }
}

/// An unknown kind number read from the ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownKind(pub u32);

impl TryFrom<u32> for RecordKind {
    type Error = UnknownKind;
    fn try_from(raw: u32) -> Result<Self, UnknownKind> {
        Ok(match raw {
            1 => RecordKind::ExecArgs,
            2 => RecordKind::Exec,
            3 => RecordKind::ExecFailed,
            4 => RecordKind::Fork,
            5 => RecordKind::Exit,
            6 => RecordKind::FileOp,
            7 => RecordKind::Net,
            8 => RecordKind::IoUring,
            9 => RecordKind::IoUringDone,
            10 => RecordKind::IoUringSetup,
            11 => RecordKind::Syscall,
            12 => RecordKind::Signal,
            13 => RecordKind::CommChange,
            other => return Err(UnknownKind(other)),
        })
    }
}

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// A [`RecordKind`] number.
    pub kind: u32,
    /// Total record length in bytes, header included.
    pub len: u32,
    /// Per-CPU sequence number: one per reservation attempt, so a failed reservation leaves a gap.
    pub seq: u64,
    /// `bpf_ktime_get_boot_ns()` when the record was made.
    pub ktime_ns: u64,
    /// Start time (boot ns) of the acting process's thread-group leader: with the tgid and the
    /// boot id this names the process even after its pid is reused.
    pub proc_start_ns: u64,
    /// CPU that produced the record (whose sequence `seq` belongs to).
    pub cpu: u32,
    /// Kernel pid of the acting task (a thread id).
    pub pid: u32,
    /// Thread-group id of the acting task (the process id users see).
    pub tgid: u32,
    /// Real and effective credentials of the acting task when the record was made.
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub _pad: u32,
}

/// Flags on exec records.
pub mod exec_flags {
    /// More argv bytes than [`super::ARGS_CAP`]: the capture stops at the cap.
    pub const ARGS_TRUNCATED: u32 = 1 << 0;
    /// More argv entries than [`super::MAX_ARGS`].
    pub const ARGS_TOO_MANY: u32 = 1 << 1;
    /// The filename did not fit in [`super::PATH_CAP`].
    pub const FILENAME_TRUNCATED: u32 = 1 << 2;
    /// Reading argv from user memory failed (bad pointer): what was read so far is kept.
    pub const ARGS_READ_FAILED: u32 = 1 << 3;
    /// A 32-bit (`int 0x80` / ia32 compat) execve: argv is an array of 32-bit pointers.
    pub const COMPAT: u32 = 1 << 4;
    /// The executed file's path did not fit in [`super::PATH_CAP`] or was deeper than the walk.
    pub const EXE_TRUNCATED: u32 = 1 << 5;
    /// The process has no executable file (`mm->exe_file` unset).
    pub const NO_EXE: u32 = 1 << 6;
    /// The executed file was unlinked (e.g. a memfd or a deleted binary).
    pub const EXE_DELETED: u32 = 1 << 7;
}

/// Bit 31 of a record's `syscall_nr`: the call came through the 32-bit compat entry (`int 0x80`,
/// ia32 emulation) and the low bits are an i386 syscall number.
pub const SYSCALL_COMPAT: u32 = 1 << 31;

/// `sys_enter_execve` / `sys_enter_execveat`: argv as passed (evidence of intent; kept for a
/// failed exec, while a successful one takes argv from the new image). Variable length: only
/// the first `args_len` bytes of `args` are sent (`header.len` = offset of `args` + `args_len`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecArgsRecord {
    pub header: RecordHeader,
    /// Number of argv entries captured.
    pub argc: u32,
    /// [`exec_flags`] bits.
    pub flags: u32,
    /// `execveat` directory fd, or -100 (`AT_FDCWD`) for `execve`.
    pub dirfd: i32,
    pub filename_len: u32,
    pub args_len: u32,
    pub _pad: u32,
    /// The filename as the caller passed it (not NUL-terminated; `filename_len` bytes).
    pub filename: [u8; PATH_CAP],
    /// argv entries, each NUL-terminated.
    pub args: [u8; ARGS_CAP],
}

/// Bytes of a controlling terminal's name kept (`tty_struct.name`, e.g. `pts/3`).
pub const TTY_CAP: usize = 32;

/// `sched_process_exec`: a successful exec, with what the kernel itself holds for the new image:
/// argv from the new `mm` (`arg_start..arg_end`), the executed file (`mm->exe_file`) as a path
/// resolved from its mount and dentries plus its device, inode, size and mtime, and who runs it
/// (audit login uid, session id, controlling terminal). Variable length: only the first
/// `args_len` bytes of `args` are sent.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecRecord {
    pub header: RecordHeader,
    /// Thread id that called exec (differs from `header.pid` when a non-leader thread execs).
    pub old_tid: u32,
    /// Thread-group id of the real parent.
    pub parent_tgid: u32,
    /// Start time (boot ns) of the real parent's thread-group leader.
    pub parent_start_ns: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// [`exec_flags`] bits.
    pub flags: u32,
    /// Length of `filename` (the name the caller passed, as the kernel copied it).
    pub filename_len: u32,
    /// Length of `exe` (the executed file's resolved path).
    pub exe_len: u32,
    pub args_len: u32,
    /// The executed file: device (kernel `dev_t`, major << 20 | minor) and inode.
    pub exe_dev: u32,
    /// Audit login uid (`task_struct.loginuid`; `u32::MAX` = unset).
    pub loginuid: u32,
    pub exe_ino: u64,
    /// Size and modification time of the executed file at exec (the digest cache key).
    pub exe_size: u64,
    pub exe_mtime_sec: i64,
    pub exe_mtime_nsec: u32,
    /// Audit session id (`u32::MAX` = unset).
    pub sessionid: u32,
    /// `comm` after the exec.
    pub comm: [u8; COMM_LEN],
    /// Controlling terminal name, NUL-padded; empty without one.
    pub tty: [u8; TTY_CAP],
    /// The filename as passed to exec (the kernel's copy: `bprm->filename`).
    pub filename: [u8; PATH_CAP],
    /// The executed file's path from its `struct file` (mount + dentry walk).
    pub exe: [u8; PATH_CAP],
    /// argv from the new image, each entry NUL-terminated.
    pub args: [u8; ARGS_CAP],
}

/// Bytes of an [`ExecRecord`] before its argv.
pub const EXEC_FIXED_LEN: usize = offset_of!(ExecRecord, args);

/// `sys_exit_execve(at)` with an error.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecFailedRecord {
    pub header: RecordHeader,
    /// Positive errno.
    pub errno: i32,
    pub _pad: u32,
}

/// `task_newtask`: the current task created a process or thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkRecord {
    pub header: RecordHeader,
    /// The new task's kernel pid (thread id).
    pub child_pid: u32,
    /// The new task's thread-group id (equal to the creator's tgid for a thread).
    pub child_tgid: u32,
    /// `clone` flags; `CLONE_THREAD` means a thread, not a process.
    pub clone_flags: u64,
    /// The new task's start time (boot ns).
    pub child_start_ns: u64,
}

/// `sched_process_exit`: a task exited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitRecord {
    pub header: RecordHeader,
    /// Raw kernel `exit_code`: `(status << 8)` for a normal exit, the signal number (plus 0x80
    /// for a core dump) when killed.
    pub exit_code: u32,
    /// 1 when this was the last task of its thread group (the process is gone).
    pub group_dead: u32,
}

/// File operations in [`FileOpRecord::op`].
pub mod file_op {
    pub const OPEN: u32 = 1;
    pub const UNLINK: u32 = 2;
    pub const RENAME: u32 = 3;
    pub const CHMOD: u32 = 4;
    pub const CHOWN: u32 = 5;
    /// `link`/`linkat`: `path` the existing file, `path2` the new name.
    pub const LINK: u32 = 6;
    /// `symlink`/`symlinkat`: `path` the target text, `path2` the new link.
    pub const SYMLINK: u32 = 7;
    pub const MKDIR: u32 = 8;
    pub const RMDIR: u32 = 9;
    /// `mknod`/`mknodat`: `mode` carries the file type; the device number is in `uid`.
    pub const MKNOD: u32 = 10;
    /// `truncate`/`ftruncate`: the new length is in `uid` (low) and `gid` (high).
    pub const TRUNCATE: u32 = 11;
    /// `setxattr` family: `path2` is the attribute name.
    pub const SETXATTR: u32 = 12;
    /// `removexattr` family: `path2` is the attribute name.
    pub const REMOVEXATTR: u32 = 13;
    /// `utime`/`utimes`/`utimensat`/`futimesat`.
    pub const UTIMES: u32 = 14;

    /// Whether the op carries a second path or name in `path2`.
    pub const fn has_path2(op: u32) -> bool {
        matches!(op, RENAME | LINK | SYMLINK | SETXATTR | REMOVEXATTR)
    }
}

/// `AT_EMPTY_PATH`: set in a file record's `flags` when the call named an fd (`fchmod`,
/// `fchown`, `ftruncate`, `fsetxattr`, ...) rather than a path; `dirfd` is that fd.
pub const AT_EMPTY_PATH: u32 = 0x1000;

/// Network operations in [`NetRecord::op`].
pub mod net_op {
    pub const CONNECT: u32 = 1;
    pub const ACCEPT: u32 = 2;
    /// `bind`: the local address the caller asked for.
    pub const BIND: u32 = 3;
    /// `listen`: the bound address read from the socket; the backlog is in `local_port`.
    pub const LISTEN: u32 = 4;
    /// `sendto`/`sendmsg` with an explicit destination, once per (socket, peer).
    pub const SEND: u32 = 5;
}

/// Flags in [`FileOpRecord::trunc`].
pub mod path_flags {
    /// The first path did not fit in [`super::PATH_CAP`] (or the walk hit its depth bound).
    pub const PATH_TRUNCATED: u32 = 1 << 0;
    /// The second path (rename target) did not fit.
    pub const PATH2_TRUNCATED: u32 = 1 << 1;
    /// A name could not be read from user memory.
    pub const PATH_UNREADABLE: u32 = 1 << 2;
    /// A name as given did not fit in [`super::PATH_CAP`].
    pub const GIVEN_TRUNCATED: u32 = 1 << 3;
    /// The opened file was unlinked at the time (O_TMPFILE, deleted, memfd).
    pub const PATH_DELETED: u32 = 1 << 4;
}

/// Where [`FileOpRecord::path`] came from.
pub mod path_source {
    /// The opened file itself (fd → `struct file` → mount + dentry walk): the kernel's truth.
    pub const FILE: u32 = 1;
    /// The directory the name is relative to (the dirfd's file, or the cwd) resolved by the
    /// kernel; the name itself is as given (user memory). No fd exists for the object (unlink,
    /// rename, chmod, chown, failed opens).
    pub const DIR: u32 = 2;
    /// Only the name as given (an absolute name, or the directory could not be resolved).
    pub const GIVEN: u32 = 3;
}

/// A file syscall and its result, emitted at syscall exit.
///
/// Variable length: a single-path record ends after `given_len` bytes of `given`; a rename
/// record after `given2_len` bytes of `given2`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FileOpRecord {
    pub header: RecordHeader,
    /// A [`file_op`] value.
    pub op: u32,
    /// The architecture's syscall number.
    pub syscall_nr: u32,
    /// The syscall's return value: an fd for opens, 0 on success, `-errno` on failure.
    pub result: i64,
    /// Open flags, `unlinkat`/`fchownat`/`fchmodat2` flags or `renameat2` flags.
    pub flags: u32,
    /// Open mode or chmod mode.
    pub mode: u32,
    /// Directory fd the name is relative to (-100 = the cwd).
    pub dirfd: i32,
    /// Directory fd of the rename target.
    pub dirfd2: i32,
    /// chown target ids (`u32::MAX`: unchanged).
    pub uid: u32,
    pub gid: u32,
    /// [`path_flags`] bits.
    pub trunc: u32,
    /// [`path_source`] of `path` (and of `path2` for a rename).
    pub source: u32,
    /// The opened file's device (kernel `dev_t`) and inode; 0 without an opened file.
    pub dev: u32,
    pub given_len: u32,
    pub ino: u64,
    pub given2_len: u32,
    pub path2_len: u32,
    pub path_len: u32,
    /// `path_len * 8`, placed right before `path` so the two form an LPM-trie key for the
    /// kernel-side path-prefix filter.
    pub path_prefix_bits: u32,
    /// [`path_source::FILE`]: the opened file's path; [`path_source::DIR`]: the directory the
    /// name is relative to; [`path_source::GIVEN`]: empty.
    pub path: [u8; PATH_CAP],
    /// The name as the caller passed it (user memory at syscall exit: evidence of intent).
    pub given: [u8; PATH_CAP],
    /// rename: the target's directory and name, as for the first path.
    pub path2: [u8; PATH_CAP],
    pub given2: [u8; PATH_CAP],
}

/// Bytes of a [`FileOpRecord`] before its first path.
pub const FILE_OP_FIXED_LEN: usize = offset_of!(FileOpRecord, path);

/// `connect` (address read from the caller at entry, result at exit) or `accept` (addresses
/// read from the new socket).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NetRecord {
    pub header: RecordHeader,
    /// A [`net_op`] value.
    pub op: u32,
    pub syscall_nr: u32,
    /// connect: 0 or `-errno` (`-EINPROGRESS` for a non-blocking connect in flight);
    /// accept: the new fd or `-errno`.
    pub result: i64,
    /// The socket fd (connect) or the listening fd (accept).
    pub fd: i32,
    /// `AF_INET` (2), `AF_INET6` (10) or `AF_UNIX` (1); 0 when unknown.
    pub family: u16,
    /// accept: the local port (host order).
    pub local_port: u16,
    /// The remote port (host order).
    pub remote_port: u16,
    /// Valid bytes in `addr`: 4 (IPv4), 16 (IPv6) or the Unix path length.
    pub addr_len: u16,
    /// accept: the local address (IPv4 in the first 4 bytes).
    pub local_addr: [u8; 16],
    /// The remote address, or the Unix socket path.
    pub addr: [u8; 108],
}

/// Load-time-and-runtime filter settings (the single slot of the `FILTER_CONFIG` map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterConfig {
    /// Bit `1 << op` for a disabled [`file_op`], bit `1 << (16 + op)` for a [`net_op`].
    pub disabled_ops: u32,
    /// Record an open only if `flags & open_flags_mask != 0`; 0 records every open.
    pub open_flags_mask: u32,
    /// [`filter_mode`] for the uid rule.
    pub uid_mode: u32,
    pub uid: u32,
    /// [`filter_mode`] for the cgroup rule.
    pub cgroup_mode: u32,
    /// [`filter_mode`] for comm rules: with `ONLY`, only listed comms are recorded.
    pub comm_mode: u32,
    pub cgroup_id: u64,
    /// 1: a path is recorded only if an include prefix matches it.
    pub path_default_exclude: u32,
    pub _pad: u32,
}

/// How a filter rule applies.
pub mod filter_mode {
    pub const OFF: u32 = 0;
    /// Record only what matches.
    pub const ONLY: u32 = 1;
    /// Record everything but what matches.
    pub const EXCEPT: u32 = 2;
}

/// A path-prefix or comm rule's verdict and the counter it bumps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterRule {
    /// [`rule_action`].
    pub action: u32,
    /// Slot in the per-CPU `FILTERED` counters.
    pub rule_id: u32,
}

pub mod rule_action {
    pub const INCLUDE: u32 = 1;
    pub const EXCLUDE: u32 = 2;
}

/// Fixed counter slots of `FILTERED`; configured rules use [`FIRST_USER_RULE`] and up.
pub mod builtin_rule {
    pub const OP_DISABLED: u32 = 0;
    pub const UID: u32 = 1;
    pub const CGROUP: u32 = 2;
    pub const COMM_NOT_LISTED: u32 = 3;
    pub const OPEN_FLAGS: u32 = 4;
    pub const PATH_NOT_INCLUDED: u32 = 5;
}
pub const FIRST_USER_RULE: u32 = 8;
pub const FILTER_SLOTS: u32 = 64;

/// A file or socket request submitted through io_uring, read from the kernel's prepared request
/// (`struct io_kiocb` and its per-opcode command) at `io_uring_submit_req`, before it runs.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IoUringRecord {
    pub header: RecordHeader,
    /// The ring (`struct io_ring_ctx *`) and request (`struct io_kiocb *`): with `user_data` they
    /// join this record to its [`IoUringDoneRecord`].
    pub ctx: u64,
    pub req: u64,
    pub user_data: u64,
    /// `IORING_OP_*`.
    pub opcode: u32,
    /// A [`file_op`] or `0x100 | `[`net_op`] value; 0 when the opcode is not decoded.
    pub op: u32,
    /// The request's fd (`sqe->fd`), a fixed-file index when `IOSQE_FIXED_FILE` is in
    /// `sqe_flags`; -1 when the opcode takes none.
    pub fd: i32,
    pub sqe_flags: u32,
    /// Directory fds of the first and second path (-100 = the cwd).
    pub dirfd: i32,
    pub dirfd2: i32,
    /// Open flags or the per-opcode flags (`renameat2`, `unlinkat`, `linkat`).
    pub flags: u32,
    pub mode: u32,
    /// 1 when submitted by the SQPOLL kernel thread.
    pub sq_thread: u32,
    /// [`path_flags`] bits; [`io_uring_flags`] bits.
    pub trunc: u32,
    /// Socket family and port (host order) of the kernel's copy of the address.
    pub family: u16,
    pub port: u16,
    /// Valid bytes of `addr`: 4, 16 or the Unix path length.
    pub addr_len: u16,
    pub _pad: u16,
    pub path2_len: u32,
    pub path_len: u32,
    /// `path_len * 8` right before `path`: an LPM key for the path-prefix filter.
    pub path_prefix_bits: u32,
    pub path: [u8; PATH_CAP],
    pub path2: [u8; PATH_CAP],
    /// IP address, or the Unix socket path.
    pub addr: [u8; 108],
    pub _pad2: [u8; 8],
}

/// Flags in [`IoUringRecord::trunc`] beyond the [`path_flags`].
pub mod io_uring_flags {
    /// The kernel structures of this opcode could not be read (BTF members missing): only the
    /// opcode, fd and process are known.
    pub const UNDECODED: u32 = 1 << 8;
}

/// Offset of `op` values that are socket operations in [`IoUringRecord::op`].
pub const IO_URING_NET: u32 = 0x100;

/// `io_uring:io_uring_complete` for a request that was recorded at submit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoUringDoneRecord {
    pub header: RecordHeader,
    pub ctx: u64,
    pub req: u64,
    pub user_data: u64,
    /// The CQE result: an fd, 0 or `-errno`.
    pub res: i32,
    pub cflags: u32,
}

/// `io_uring_create` (ring set up) or `io_uring_register`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IoUringSetupRecord {
    pub header: RecordHeader,
    pub ctx: u64,
    /// 0: create; 1: register.
    pub what: u32,
    /// create: the ring fd.
    pub fd: i32,
    /// create: SQ and CQ sizes and setup flags; register: opcode, files, buffers.
    pub a: u32,
    pub b: u32,
    pub c: u32,
    pub _pad: u32,
    /// register: the return value.
    pub ret: i64,
}

/// Kinds of [`SyscallRecord::op`].
pub mod sys_op {
    /// setuid/setgid/setreuid/setregid/setresuid/setresgid/setgroups/setfsuid/setfsgid.
    pub const CREDS: u32 = 1;
    pub const CAPSET: u32 = 2;
    /// ptrace attach/seize/traceme and memory/register pokes.
    pub const PTRACE: u32 = 3;
    /// init_module / finit_module (`str1`: the module's path or name when known).
    pub const MODULE_LOAD: u32 = 4;
    /// delete_module (`str1`: the module name).
    pub const MODULE_UNLOAD: u32 = 5;
    /// bpf(): `args[0]` the command; `str1` the program or map name.
    pub const BPF: u32 = 6;
    /// mount (`str1` source, `str2` target; args: flags), umount (`str2` target).
    pub const MOUNT: u32 = 7;
    pub const UMOUNT: u32 = 8;
    /// pivot_root (`str1` new root, `str2` put_old).
    pub const PIVOT_ROOT: u32 = 9;
    pub const UNSHARE: u32 = 10;
    pub const SETNS: u32 = 11;
    /// memfd_create (`str1`: the name).
    pub const MEMFD: u32 = 12;
    /// A compat syscall that is not decoded: its number and raw arguments.
    pub const COMPAT_OTHER: u32 = 13;
}

/// Credentials as `[uid, gid, suid, sgid, euid, egid, fsuid, fsgid]`.
pub type Ids = [u32; 8];

/// A security-relevant syscall with its raw arguments, result and, for credential changes,
/// the credentials before (entry) and after (exit). Fixed size.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallRecord {
    pub header: RecordHeader,
    /// Syscall number; [`SYSCALL_COMPAT`] set for an i386 number.
    pub syscall_nr: u32,
    /// A [`sys_op`] value.
    pub op: u32,
    pub result: i64,
    pub args: [u64; 6],
    pub old_ids: Ids,
    pub new_ids: Ids,
    /// `cap_effective` before and after.
    pub old_caps: u64,
    pub new_caps: u64,
    pub str1_len: u32,
    pub str2_len: u32,
    pub str1: [u8; PATH_CAP],
    pub str2: [u8; PATH_CAP],
}

/// `signal_generate` aimed at the agent: who sent which signal.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SignalRecord {
    pub header: RecordHeader,
    pub sig: i32,
    pub code: i32,
    /// The target task (the agent's pid or one of its threads).
    pub target_pid: i32,
    /// `TRACE_SIGNAL_*`: 0 delivered, 1 ignored, 2 already pending, ...
    pub result: i32,
}

/// `task_rename`: a task changed its comm.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CommChangeRecord {
    pub header: RecordHeader,
    /// The renamed task (may differ from the actor writing /proc/PID/comm).
    pub target_pid: u32,
    pub _pad: u32,
    pub old_comm: [u8; COMM_LEN],
    pub new_comm: [u8; COMM_LEN],
}

/// Syscall arguments kept between entry and exit, per thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PendingSyscall {
    pub syscall_nr: u32,
    pub op: u32,
    pub dirfd: i32,
    pub dirfd2: i32,
    pub flags: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Socket fd for network calls.
    pub fd: i32,
    /// The [`RecordKind`] the exit probe emits.
    pub kind: u32,
    /// First path or sockaddr pointer (user memory).
    pub ptr1: u64,
    /// Second path pointer (rename target).
    pub ptr2: u64,
    /// sockaddr length for connect.
    pub len: u64,
}

/// `CLONE_THREAD` from `<linux/sched.h>`.
pub const CLONE_THREAD: u64 = 0x0001_0000;

// The layout is the contract: fail the build, on both sides, if it moves.
const _: () = {
    assert!(size_of::<RecordHeader>() == 64);
    assert!(offset_of!(RecordHeader, kind) == 0);
    assert!(offset_of!(RecordHeader, len) == 4);
    assert!(offset_of!(RecordHeader, seq) == 8);
    assert!(offset_of!(RecordHeader, ktime_ns) == 16);
    assert!(offset_of!(RecordHeader, proc_start_ns) == 24);
    assert!(offset_of!(RecordHeader, cpu) == 32);
    assert!(offset_of!(RecordHeader, pid) == 36);
    assert!(offset_of!(RecordHeader, tgid) == 40);
    assert!(offset_of!(RecordHeader, uid) == 44);
    assert!(offset_of!(RecordHeader, egid) == 56);
    assert!(offset_of!(ExecArgsRecord, argc) == 64);
    assert!(offset_of!(ExecArgsRecord, filename) == 88);
    assert!(offset_of!(ExecArgsRecord, args) == 88 + PATH_CAP);
    assert!(size_of::<ExecArgsRecord>() == 88 + PATH_CAP + ARGS_CAP);
    assert!(offset_of!(ExecRecord, parent_start_ns) == 72);
    assert!(offset_of!(ExecRecord, cgroup_id) == 80);
    assert!(offset_of!(ExecRecord, exe_ino) == 112);
    assert!(offset_of!(ExecRecord, sessionid) == 140);
    assert!(offset_of!(ExecRecord, comm) == 144);
    assert!(offset_of!(ExecRecord, tty) == 160);
    assert!(offset_of!(ExecRecord, filename) == 192);
    assert!(offset_of!(ExecRecord, exe) == 192 + PATH_CAP);
    assert!(offset_of!(ExecRecord, args) == 192 + 2 * PATH_CAP);
    assert!(size_of::<ExecRecord>() == 192 + 2 * PATH_CAP + ARGS_CAP);
    assert!(size_of::<ExecFailedRecord>() == 72);
    assert!(size_of::<ForkRecord>() == 88);
    assert!(size_of::<ExitRecord>() == 72);
    assert!(offset_of!(FileOpRecord, result) == 72);
    assert!(offset_of!(FileOpRecord, ino) == 120);
    assert!(offset_of!(FileOpRecord, path_prefix_bits) == 140);
    assert!(offset_of!(FileOpRecord, path) == 144);
    assert!(offset_of!(FileOpRecord, given) == 144 + PATH_CAP);
    assert!(offset_of!(FileOpRecord, given2) == 144 + 3 * PATH_CAP);
    assert!(size_of::<FileOpRecord>() == 144 + 4 * PATH_CAP);
    assert!(offset_of!(NetRecord, fd) == 80);
    assert!(offset_of!(NetRecord, local_addr) == 92);
    assert!(offset_of!(NetRecord, addr) == 108);
    assert!(size_of::<NetRecord>() == 216);
    assert!(size_of::<FilterConfig>() == 40);
    assert!(offset_of!(IoUringRecord, opcode) == 88);
    assert!(offset_of!(IoUringRecord, path_prefix_bits) == 144);
    assert!(offset_of!(IoUringRecord, path) == 148);
    assert!(offset_of!(IoUringRecord, addr) == 148 + 2 * PATH_CAP);
    assert!(size_of::<IoUringRecord>() == 148 + 2 * PATH_CAP + 116);
    assert!(size_of::<IoUringDoneRecord>() == 96);
    assert!(size_of::<IoUringSetupRecord>() == 104);
    assert!(offset_of!(SyscallRecord, args) == 80);
    assert!(offset_of!(SyscallRecord, old_caps) == 192);
    assert!(offset_of!(SyscallRecord, str1) == 216);
    assert!(size_of::<SyscallRecord>() == 216 + 2 * PATH_CAP);
    assert!(size_of::<SignalRecord>() == 80);
    assert!(size_of::<CommChangeRecord>() == 104);
    assert!(size_of::<PendingSyscall>() == 64);
    assert!(ARGS_CAP.is_power_of_two());
    assert!(PATH_CAP.is_power_of_two());
};

/// Offset of the argv bytes in an [`ExecArgsRecord`]: the fixed part every such record carries.
pub const EXEC_ARGS_FIXED_LEN: usize = offset_of!(ExecArgsRecord, args);
