//! File syscalls: open/openat/openat2/creat, unlink/unlinkat, rename/renameat/renameat2,
//! chmod/fchmodat/fchmodat2/fchmod, chown/lchown/fchownat/fchown, link/linkat,
//! symlink/symlinkat, mkdir/mkdirat, rmdir, mknod/mknodat, truncate/ftruncate, the setxattr and
//! removexattr families, utime/utimes/utimensat/futimesat.
//!
//! Calls that name an fd instead of a path (`fchmod`, `ftruncate`, `fsetxattr`, ...) are
//! recorded with `AT_EMPTY_PATH` and the fd in `dirfd`, as the kernel itself treats them; their
//! path is the fd's file, resolved like an opened file's.
//!
//! `sys_enter_file` is attached to each syscall's `syscalls/sys_enter_*` tracepoint (argument
//! `i` at offset 16 + 8·i) and keeps the arguments per thread; `sys_exit_file`, attached to the
//! matching `sys_exit_*` tracepoints (`ret` at 16), resolves the path, applies the path-prefix
//! filter and emits one record with the result.
//!
//! The path is the kernel's: a successful open's fd (or an fd-only call's fd) leads to its
//! `struct file`, whose mount and dentries are walked (`path.rs`), so a thread that rewrites
//! the caller's buffer cannot change it. Calls that leave no fd (unlink, rename, chmod, ...,
//! failed opens) resolve the directory the name is relative to the same way (the dirfd's file
//! or the cwd) and keep the name as given; the record says which (`path_source`). The names as
//! given are always kept too, read from the caller's memory at exit: evidence of intent.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_user,
        generated::{bpf_probe_read_kernel, bpf_probe_read_user_str},
    },
    macros::tracepoint,
    maps::lpm_trie::Key,
    programs::TracePointContext,
};
use lineage_common::{
    builtin_rule, file_op, path_flags, path_source, rule_action, FileOpRecord, PendingSyscall,
    RecordKind, AT_EMPTY_PATH, FILE_OP_FIXED_LEN, PATH_CAP,
};

use crate::{
    emit::{count_failure, header, observed_task, submit_flags},
    filter,
    maps::{offsets, EVENTS, FILE_SCRATCH, PATH_FILTER, PENDING},
    path,
    syscalls::nr,
    task::Task,
};

const AT_FDCWD: i32 = -100;
const AT_SYMLINK_NOFOLLOW: u32 = 0x100;
const O_WRONLY: u32 = 1;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;

#[inline(always)]
fn arg(ctx: &TracePointContext, i: usize) -> u64 {
    // SAFETY: syscall tracepoint arguments are 8-byte slots from offset 16.
    unsafe { ctx.read_at::<u64>(16 + 8 * i) }.unwrap_or(0)
}

/// The tracked syscall's arguments in a common shape, or `None` for an untracked number.
#[inline(always)]
fn file_args(ctx: &TracePointContext, syscall: i32) -> Option<PendingSyscall> {
    file_args_from(syscall, syscall as u32, |i| arg(ctx, i))
}

/// A pending file op for an fd-only call (`fchmod`, `ftruncate`, ...).
#[inline(always)]
fn on_fd(p: &mut PendingSyscall, op: u32, fd: u64) {
    (p.op, p.dirfd, p.flags) = (op, fd as i32, AT_EMPTY_PATH);
}

/// Decodes a native syscall (`syscall`, argument `i` from `a(i)`) into a pending file op;
/// `recorded_nr` is what the record will carry as its syscall number.
#[inline(always)]
pub fn file_args_from(
    syscall: i32,
    recorded_nr: u32,
    a: impl Fn(usize) -> u64,
) -> Option<PendingSyscall> {
    let mut p = PendingSyscall {
        syscall_nr: recorded_nr,
        kind: RecordKind::FileOp as u32,
        dirfd: AT_FDCWD,
        dirfd2: AT_FDCWD,
        uid: u32::MAX,
        gid: u32::MAX,
        ..Default::default()
    };
    match syscall {
        nr::OPEN => {
            (p.op, p.ptr1, p.flags, p.mode) = (file_op::OPEN, a(0), a(1) as u32, a(2) as u32)
        }
        nr::CREAT => {
            (p.op, p.ptr1, p.flags, p.mode) = (
                file_op::OPEN,
                a(0),
                O_CREAT | O_WRONLY | O_TRUNC,
                a(1) as u32,
            )
        }
        nr::OPENAT => {
            (p.op, p.dirfd, p.ptr1, p.flags, p.mode) =
                (file_op::OPEN, a(0) as i32, a(1), a(2) as u32, a(3) as u32)
        }
        nr::OPENAT2 => {
            // struct open_how { u64 flags; u64 mode; u64 resolve; }
            let how = a(2) as *const u64;
            // SAFETY: user pointer read through the checked helper.
            let flags = unsafe { bpf_probe_read_user(how) }.unwrap_or(0);
            let mode = unsafe { bpf_probe_read_user(how.wrapping_add(1)) }.unwrap_or(0);
            (p.op, p.dirfd, p.ptr1, p.flags, p.mode) =
                (file_op::OPEN, a(0) as i32, a(1), flags as u32, mode as u32);
        }
        nr::UNLINK => (p.op, p.ptr1) = (file_op::UNLINK, a(0)),
        nr::UNLINKAT => {
            (p.op, p.dirfd, p.ptr1, p.flags) = (file_op::UNLINK, a(0) as i32, a(1), a(2) as u32)
        }
        nr::RENAME => (p.op, p.ptr1, p.ptr2) = (file_op::RENAME, a(0), a(1)),
        nr::RENAMEAT | nr::RENAMEAT2 => {
            (p.op, p.dirfd, p.ptr1, p.dirfd2, p.ptr2) =
                (file_op::RENAME, a(0) as i32, a(1), a(2) as i32, a(3));
            if syscall == nr::RENAMEAT2 {
                p.flags = a(4) as u32;
            }
        }
        nr::CHMOD => (p.op, p.ptr1, p.mode) = (file_op::CHMOD, a(0), a(1) as u32),
        nr::FCHMODAT | nr::FCHMODAT2 => {
            (p.op, p.dirfd, p.ptr1, p.mode) = (file_op::CHMOD, a(0) as i32, a(1), a(2) as u32);
            if syscall == nr::FCHMODAT2 {
                p.flags = a(3) as u32;
            }
        }
        nr::CHOWN | nr::LCHOWN => {
            (p.op, p.ptr1, p.uid, p.gid) = (file_op::CHOWN, a(0), a(1) as u32, a(2) as u32);
            if syscall == nr::LCHOWN {
                p.flags = AT_SYMLINK_NOFOLLOW;
            }
        }
        nr::FCHOWNAT => {
            (p.op, p.dirfd, p.ptr1, p.uid, p.gid, p.flags) = (
                file_op::CHOWN,
                a(0) as i32,
                a(1),
                a(2) as u32,
                a(3) as u32,
                a(4) as u32,
            )
        }
        nr::LINK => (p.op, p.ptr1, p.ptr2) = (file_op::LINK, a(0), a(1)),
        nr::LINKAT => {
            (p.op, p.dirfd, p.ptr1, p.dirfd2, p.ptr2, p.flags) = (
                file_op::LINK,
                a(0) as i32,
                a(1),
                a(2) as i32,
                a(3),
                a(4) as u32,
            )
        }
        nr::SYMLINK => (p.op, p.ptr1, p.ptr2) = (file_op::SYMLINK, a(0), a(1)),
        nr::SYMLINKAT => {
            (p.op, p.ptr1, p.dirfd2, p.ptr2) = (file_op::SYMLINK, a(0), a(1) as i32, a(2))
        }
        nr::MKDIR => (p.op, p.ptr1, p.mode) = (file_op::MKDIR, a(0), a(1) as u32),
        nr::MKDIRAT => {
            (p.op, p.dirfd, p.ptr1, p.mode) = (file_op::MKDIR, a(0) as i32, a(1), a(2) as u32)
        }
        nr::RMDIR => (p.op, p.ptr1) = (file_op::RMDIR, a(0)),
        nr::MKNOD => {
            (p.op, p.ptr1, p.mode, p.uid) = (file_op::MKNOD, a(0), a(1) as u32, a(2) as u32)
        }
        nr::MKNODAT => {
            (p.op, p.dirfd, p.ptr1, p.mode, p.uid) =
                (file_op::MKNOD, a(0) as i32, a(1), a(2) as u32, a(3) as u32)
        }
        nr::TRUNCATE => {
            (p.op, p.ptr1, p.uid, p.gid) =
                (file_op::TRUNCATE, a(0), a(1) as u32, (a(1) >> 32) as u32)
        }
        nr::FTRUNCATE => {
            on_fd(&mut p, file_op::TRUNCATE, a(0));
            (p.uid, p.gid) = (a(1) as u32, (a(1) >> 32) as u32);
        }
        nr::FCHMOD => {
            on_fd(&mut p, file_op::CHMOD, a(0));
            p.mode = a(1) as u32;
        }
        nr::FCHOWN => {
            on_fd(&mut p, file_op::CHOWN, a(0));
            (p.uid, p.gid) = (a(1) as u32, a(2) as u32);
        }
        nr::SETXATTR | nr::LSETXATTR => {
            (p.op, p.ptr1, p.ptr2, p.flags) = (file_op::SETXATTR, a(0), a(1), a(4) as u32);
            if syscall == nr::LSETXATTR {
                p.flags |= AT_SYMLINK_NOFOLLOW << 16;
            }
        }
        nr::FSETXATTR => {
            on_fd(&mut p, file_op::SETXATTR, a(0));
            p.ptr2 = a(1);
        }
        nr::SETXATTRAT => {
            (p.op, p.dirfd, p.ptr1, p.flags, p.ptr2) =
                (file_op::SETXATTR, a(0) as i32, a(1), a(2) as u32, a(3))
        }
        nr::REMOVEXATTR | nr::LREMOVEXATTR => {
            (p.op, p.ptr1, p.ptr2) = (file_op::REMOVEXATTR, a(0), a(1));
            if syscall == nr::LREMOVEXATTR {
                p.flags = AT_SYMLINK_NOFOLLOW;
            }
        }
        nr::FREMOVEXATTR => {
            on_fd(&mut p, file_op::REMOVEXATTR, a(0));
            p.ptr2 = a(1);
        }
        nr::REMOVEXATTRAT => {
            (p.op, p.dirfd, p.ptr1, p.flags, p.ptr2) =
                (file_op::REMOVEXATTR, a(0) as i32, a(1), a(2) as u32, a(3))
        }
        nr::UTIME | nr::UTIMES => (p.op, p.ptr1) = (file_op::UTIMES, a(0)),
        nr::FUTIMESAT => (p.op, p.dirfd, p.ptr1) = (file_op::UTIMES, a(0) as i32, a(1)),
        nr::UTIMENSAT => {
            (p.op, p.dirfd, p.ptr1, p.flags) = (file_op::UTIMES, a(0) as i32, a(1), a(3) as u32);
            // utimensat(fd, NULL, ...) is futimens: the fd itself.
            if p.ptr1 == 0 {
                p.flags |= AT_EMPTY_PATH;
            }
        }
        _ => return None,
    }
    Some(p)
}

#[tracepoint]
pub fn sys_enter_file(ctx: TracePointContext) -> u32 {
    let Some((pid, _)) = observed_task() else {
        return 0;
    };
    // SAFETY: `__syscall_nr` is at offset 8 of every syscall tracepoint.
    let syscall: i32 = unsafe { ctx.read_at(8) }.unwrap_or(-1);
    let Some(pending) = file_args(&ctx, syscall) else {
        return 0;
    };
    enter(pid, &pending);
    0
}

/// Applies the op and actor filters to a decoded call and keeps it for the exit probe.
#[inline(always)]
pub fn enter(pid: u32, pending: &PendingSyscall) {
    let cfg = filter::config();
    if cfg.disabled_ops & (1 << pending.op) != 0 {
        filter::count(builtin_rule::OP_DISABLED);
        return;
    }
    if pending.op == file_op::OPEN
        && cfg.open_flags_mask != 0
        && pending.flags & cfg.open_flags_mask == 0
    {
        filter::count(builtin_rule::OPEN_FLAGS);
        return;
    }
    if !filter::actor_allowed(&cfg) {
        return;
    }
    let _ = PENDING.insert(&pid, pending, 0);
}

/// Reads a user string into `dst` (PATH_CAP bytes); returns (length without NUL, flags).
/// A NULL pointer (an fd-only call) reads as empty, not as unreadable.
#[inline(always)]
fn read_path(src: u64, dst: *mut u8, truncated: u32) -> (u32, u32) {
    if src == 0 {
        return (0, 0);
    }
    // SAFETY: the helper validates the user address and writes at most PATH_CAP bytes.
    let n = unsafe { bpf_probe_read_user_str(dst.cast(), PATH_CAP as u32, src as *const _) };
    if n <= 0 {
        return (0, path_flags::PATH_UNREADABLE);
    }
    let len = (n as u32 - 1) & (PATH_CAP as u32 - 1);
    let flags = if n as usize == PATH_CAP && user_byte(src + PATH_CAP as u64 - 1) != Some(0) {
        truncated
    } else {
        0
    };
    (len, flags)
}

#[inline(always)]
fn user_byte(addr: u64) -> Option<u8> {
    // SAFETY: checked helper.
    unsafe { bpf_probe_read_user(addr as *const u8) }.ok()
}

#[tracepoint]
pub fn sys_exit_file(ctx: TracePointContext) -> u32 {
    let Some((pid, tgid)) = observed_task() else {
        return 0;
    };
    // SAFETY: the entry probe stored it; copied out before removal.
    let Some(pending) = (unsafe { PENDING.get(&pid) }).copied() else {
        return 0;
    };
    let _ = PENDING.remove(&pid);
    // SAFETY: `ret` is at offset 16.
    let result: i64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    exit(pid, tgid, &pending, result);
    0
}

/// Resolves a name that left no fd behind into `dir` (PATH_CAP bytes): the directory it is
/// relative to, from the kernel (the dirfd's file or the cwd); an absolute name is copied
/// instead. Returns (len, source, flags).
#[inline(always)]
fn resolve_name(
    task: Task,
    dirfd: i32,
    given: *const u8,
    given_len: u32,
    dir: *mut u8,
) -> (u32, u32, u32) {
    // SAFETY: `given` points at a PATH_CAP-byte record buffer.
    if given_len > 0 && unsafe { *given } == b'/' {
        // SAFETY: both are PATH_CAP-byte record buffers.
        unsafe { bpf_probe_read_kernel(dir.cast(), PATH_CAP as u32, given.cast()) };
        return (given_len, path_source::GIVEN, 0);
    }
    let dir_path = if dirfd == AT_FDCWD {
        task.cwd()
    } else {
        let file = task.file_of_fd(dirfd);
        if file.is_null() {
            return (0, path_source::GIVEN, 0);
        }
        file.plus(offsets().file_f_path)
    };
    let walked = path::resolve(dir_path, dir);
    (
        walked.len,
        path_source::DIR,
        walked.flags & path_flags::PATH_TRUNCATED,
    )
}

/// Resolves the call's first path into the record from the kernel's objects: the opened file
/// (a successful open's fd, or the fd of an fd-only call), else the directory the name is
/// relative to. Returns (len, source, flags).
#[inline(always)]
unsafe fn resolve_first(
    rec: *mut FileOpRecord,
    pending: &PendingSyscall,
    result: i64,
    given_len: u32,
) -> (u32, u32, u32) {
    let task = Task::current();
    let fd = if pending.op == file_op::OPEN && result >= 0 {
        result as i32
    } else if pending.ptr1 == 0 && pending.flags & AT_EMPTY_PATH != 0 {
        pending.dirfd
    } else {
        -1
    };
    // SAFETY: `rec` is this CPU's scratch slot.
    unsafe {
        if fd >= 0 {
            let (walked, dev, ino) =
                path::resolve_file(task.file_of_fd(fd), (*rec).path.as_mut_ptr());
            (*rec).dev = dev;
            (*rec).ino = ino;
            return (walked.len, path_source::FILE, walked.flags);
        }
        (*rec).dev = 0;
        (*rec).ino = 0;
        if pending.op == file_op::SYMLINK {
            // The first "path" of symlink is the link's content, not a name to resolve.
            return (0, path_source::GIVEN, 0);
        }
        resolve_name(
            task,
            pending.dirfd,
            (*rec).given.as_ptr(),
            given_len,
            (*rec).path.as_mut_ptr(),
        )
    }
}

/// Resolves the paths of a finished call from the kernel, applies the path filter and emits
/// its record. The names as given are read from the caller's memory too (evidence of intent).
#[inline(always)]
pub fn exit(pid: u32, tgid: u32, pending: &PendingSyscall, result: i64) {
    let Some(rec) = FILE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let has_path2 = file_op::has_path2(pending.op);
    // SAFETY: `rec` is this CPU's scratch slot.
    unsafe {
        let (given_len, mut trunc) = read_path(
            pending.ptr1,
            (*rec).given.as_mut_ptr(),
            path_flags::GIVEN_TRUNCATED,
        );
        (*rec).given_len = given_len;
        let (path_len, source, flags) = resolve_first(rec, pending, result, given_len);
        trunc |= flags;
        (*rec).path_len = path_len;
        (*rec).source = source;
        (*rec).path_prefix_bits = path_len * 8;
        // A whole path (the kernel's, or an absolute name) is judged here: the longest
        // configured prefix decides; with include-only paths, no match drops. A directory
        // alone is not the object; the agent judges the joined name.
        if source != path_source::DIR && path_len > 0 {
            let key = &*(&raw const (*rec).path_prefix_bits as *const Key<[u8; PATH_CAP]>);
            match PATH_FILTER.get(key).copied() {
                Some(rule) if rule.action == rule_action::EXCLUDE => {
                    filter::count(rule.rule_id);
                    return;
                }
                None if filter::config().path_default_exclude != 0 => {
                    filter::count(builtin_rule::PATH_NOT_INCLUDED);
                    return;
                }
                _ => {}
            }
        }
        let mut given2_len = 0;
        let mut path2_len = 0;
        if has_path2 {
            let (len2, t2) = read_path(
                pending.ptr2,
                (*rec).given2.as_mut_ptr(),
                path_flags::PATH2_TRUNCATED,
            );
            given2_len = len2;
            trunc |= t2;
            // The second string is a path for rename/link/symlink, an xattr name otherwise.
            if matches!(
                pending.op,
                file_op::RENAME | file_op::LINK | file_op::SYMLINK
            ) {
                let (plen2, _, f2) = resolve_name(
                    Task::current(),
                    pending.dirfd2,
                    (*rec).given2.as_ptr(),
                    len2,
                    (*rec).path2.as_mut_ptr(),
                );
                path2_len = plen2;
                if f2 != 0 {
                    trunc |= path_flags::PATH2_TRUNCATED;
                }
            }
        }
        let len = if has_path2 {
            FILE_OP_FIXED_LEN + 3 * PATH_CAP + (given2_len as usize & (PATH_CAP - 1))
        } else {
            FILE_OP_FIXED_LEN + PATH_CAP + (given_len as usize & (PATH_CAP - 1))
        };
        (*rec).header = header(RecordKind::FileOp, len, pid, tgid);
        (*rec).op = pending.op;
        (*rec).syscall_nr = pending.syscall_nr;
        (*rec).result = result;
        (*rec).flags = pending.flags;
        (*rec).mode = pending.mode;
        (*rec).dirfd = pending.dirfd;
        (*rec).dirfd2 = pending.dirfd2;
        (*rec).uid = pending.uid;
        (*rec).gid = pending.gid;
        (*rec).trunc = trunc;
        (*rec).given2_len = given2_len;
        (*rec).path2_len = path2_len;
        let bytes = core::slice::from_raw_parts(rec as *const u8, len);
        if EVENTS.output::<[u8]>(bytes, submit_flags()).is_err() {
            count_failure(RecordKind::FileOp);
        }
    }
}
