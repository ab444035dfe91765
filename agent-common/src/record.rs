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
    /// `connect` or `accept`/`accept4` with its result.
    Net = 7,
}

/// Number of slots in per-kind counter arrays (index = kind number).
pub const KIND_SLOTS: u32 = 8;

impl RecordKind {
    pub const ALL: [RecordKind; 7] = [
        RecordKind::ExecArgs,
        RecordKind::Exec,
        RecordKind::ExecFailed,
        RecordKind::Fork,
        RecordKind::Exit,
        RecordKind::FileOp,
        RecordKind::Net,
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
}

/// `sys_enter_execve` / `sys_enter_execveat`: argv as passed. Variable length: only the first
/// `args_len` bytes of `args` are sent (`header.len` = offset of `args` + `args_len`).
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

/// `sched_process_exec`: a successful exec.
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
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// [`exec_flags`] bits (filename truncation).
    pub flags: u32,
    pub filename_len: u32,
    /// `comm` after the exec.
    pub comm: [u8; COMM_LEN],
    /// The filename the kernel resolved for the new image.
    pub filename: [u8; PATH_CAP],
}

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
}

/// Network operations in [`NetRecord::op`].
pub mod net_op {
    pub const CONNECT: u32 = 1;
    pub const ACCEPT: u32 = 2;
}

/// Flags in [`FileOpRecord::trunc`].
pub mod path_flags {
    /// The first path did not fit in [`super::PATH_CAP`].
    pub const PATH_TRUNCATED: u32 = 1 << 0;
    /// The second path (rename target) did not fit.
    pub const PATH2_TRUNCATED: u32 = 1 << 1;
    /// A path could not be read from user memory.
    pub const PATH_UNREADABLE: u32 = 1 << 2;
}

/// A file syscall and its result, emitted at syscall exit. Variable length: a single-path
/// record ends after `path_len` bytes of `path`; a rename record after `path2_len` bytes of
/// `path2`.
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
    /// Directory fd the path is relative to (-100 = the cwd).
    pub dirfd: i32,
    /// Directory fd of the rename target.
    pub dirfd2: i32,
    /// chown target ids (`u32::MAX`: unchanged).
    pub uid: u32,
    pub gid: u32,
    /// [`path_flags`] bits.
    pub trunc: u32,
    pub path2_len: u32,
    pub path_len: u32,
    /// `path_len * 8`, placed right before `path` so the two form an LPM-trie key for the
    /// kernel-side path-prefix filter.
    pub path_prefix_bits: u32,
    pub path: [u8; PATH_CAP],
    pub path2: [u8; PATH_CAP],
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
    pub _pad: u32,
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
    assert!(size_of::<RecordHeader>() == 48);
    assert!(offset_of!(RecordHeader, kind) == 0);
    assert!(offset_of!(RecordHeader, len) == 4);
    assert!(offset_of!(RecordHeader, seq) == 8);
    assert!(offset_of!(RecordHeader, ktime_ns) == 16);
    assert!(offset_of!(RecordHeader, proc_start_ns) == 24);
    assert!(offset_of!(RecordHeader, cpu) == 32);
    assert!(offset_of!(RecordHeader, pid) == 36);
    assert!(offset_of!(RecordHeader, tgid) == 40);
    assert!(offset_of!(ExecArgsRecord, argc) == 48);
    assert!(offset_of!(ExecArgsRecord, filename) == 72);
    assert!(offset_of!(ExecArgsRecord, args) == 72 + PATH_CAP);
    assert!(size_of::<ExecArgsRecord>() == 72 + PATH_CAP + ARGS_CAP);
    assert!(offset_of!(ExecRecord, parent_start_ns) == 56);
    assert!(offset_of!(ExecRecord, cgroup_id) == 80);
    assert!(offset_of!(ExecRecord, comm) == 96);
    assert!(offset_of!(ExecRecord, filename) == 112);
    assert!(size_of::<ExecRecord>() == 112 + PATH_CAP);
    assert!(size_of::<ExecFailedRecord>() == 56);
    assert!(size_of::<ForkRecord>() == 72);
    assert!(size_of::<ExitRecord>() == 56);
    assert!(offset_of!(FileOpRecord, result) == 56);
    assert!(offset_of!(FileOpRecord, path_prefix_bits) == 100);
    assert!(offset_of!(FileOpRecord, path) == 104);
    assert!(offset_of!(FileOpRecord, path2) == 104 + PATH_CAP);
    assert!(size_of::<FileOpRecord>() == 104 + 2 * PATH_CAP);
    assert!(offset_of!(NetRecord, fd) == 64);
    assert!(offset_of!(NetRecord, local_addr) == 76);
    assert!(offset_of!(NetRecord, addr) == 92);
    assert!(size_of::<NetRecord>() == 200);
    assert!(size_of::<FilterConfig>() == 40);
    assert!(size_of::<PendingSyscall>() == 64);
    assert!(ARGS_CAP.is_power_of_two());
    assert!(PATH_CAP.is_power_of_two());
};

/// Offset of the argv bytes in an [`ExecArgsRecord`]: the fixed part every such record carries.
pub const EXEC_ARGS_FIXED_LEN: usize = offset_of!(ExecArgsRecord, args);
