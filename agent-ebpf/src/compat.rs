//! 32-bit (ia32 compat) syscalls: `int 0x80` and 32-bit processes do not fire the
//! `syscalls/sys_*` tracepoints, only `raw_syscalls:sys_enter/sys_exit`, which fire for every
//! syscall on the machine. These two raw tracepoints (`TP_PROTO(struct pt_regs *regs, long id)`
//! and `TP_PROTO(struct pt_regs *regs, long ret)`, Linux 5.x–6.18) leave at once unless the task
//! is in a compat syscall (`TS_COMPAT` in `thread_info.status`, what `in_ia32_syscall()` checks),
//! then map the i386 number onto the native decoders: the records are the same kinds, with
//! [`SYSCALL_COMPAT`] in their syscall number (or [`exec_flags::COMPAT`] for exec). A compat call
//! of interest that is not decoded is recorded raw as [`sys_op::COMPAT_OTHER`].

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_get_current_task},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use lineage_common::{net_op, sys_op, PendingSyscall, RecordKind, SYSCALL_COMPAT};

use crate::{
    cap_off,
    emit::observed_task,
    exec, file,
    maps::PENDING,
    net, sec,
    syscalls::{nr, nr32, socketcall},
    task::Task,
};

/// `TS_COMPAT` in arch/x86/include/asm/thread_info.h.
const TS_COMPAT: u32 = 0x0002;
const AT_FDCWD: i32 = -100;

/// Whether the current task is inside a 32-bit syscall. The fast path of every syscall on the
/// machine: two helper calls, no map lookup.
#[inline(always)]
fn in_compat() -> bool {
    if cap_off!(valid) == 0 {
        return false;
    }
    // SAFETY: the helpers validate the address; a failed read counts as native.
    let status = unsafe {
        let task = bpf_get_current_task() as *const u8;
        bpf_probe_read_kernel(task.wrapping_add(cap_off!(ti_status) as usize) as *const u32)
    };
    status.unwrap_or(0) & TS_COMPAT != 0
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn compat_sys_enter(ctx: RawTracePointContext) -> u32 {
    if !in_compat() {
        return 0;
    }
    let Some((pid, _)) = observed_task() else {
        return 0;
    };
    let regs = Task::from_ptr(ctx.arg::<*const u8>(0));
    let id: i64 = ctx.arg(1);
    // i386 arguments 1–6 live in ebx, ecx, edx, esi, edi, ebp (32 bits each).
    let args = [
        regs.read::<u64>(cap_off!(regs_bx)) as u32 as u64,
        regs.read::<u64>(cap_off!(regs_cx)) as u32 as u64,
        regs.read::<u64>(cap_off!(regs_dx)) as u32 as u64,
        regs.read::<u64>(cap_off!(regs_si)) as u32 as u64,
        regs.read::<u64>(cap_off!(regs_di)) as u32 as u64,
        regs.read::<u64>(cap_off!(regs_bp)) as u32 as u64,
    ];
    enter(pid, id as i32, args);
    0
}

#[inline(always)]
fn enter(pid: u32, nr: i32, args: [u64; 6]) {
    let recorded = nr as u32 | SYSCALL_COMPAT;
    let a = |i: usize| args[i % 6];
    match nr {
        nr32::EXECVE => return exec::capture(a(0), a(1), AT_FDCWD, true),
        nr32::EXECVEAT => return exec::capture(a(1), a(2), a(0) as i32, true),
        _ => {}
    }
    if let Some(p) = file_call(nr, recorded, &args) {
        return file::enter(pid, &p);
    }
    if let Some(p) = net_call(nr, recorded, &args) {
        return net::enter(pid, &p);
    }
    if let Some(op) = sec_op(nr, &args) {
        sec::enter(pid, recorded, op, args);
    }
}

/// A 32-bit file call decoded as its native twin (same argument order on x86).
#[inline(always)]
fn file_call(nr: i32, recorded: u32, args: &[u64; 6]) -> Option<PendingSyscall> {
    let a = |i: usize| args[i % 6];
    let native = match nr {
        nr32::OPEN => nr::OPEN,
        nr32::CREAT => nr::CREAT,
        nr32::LINK => nr::LINK,
        nr32::UNLINK => nr::UNLINK,
        nr32::MKNOD => nr::MKNOD,
        nr32::CHMOD => nr::CHMOD,
        nr32::LCHOWN16 | nr32::LCHOWN => nr::LCHOWN,
        nr32::CHOWN16 | nr32::CHOWN => nr::CHOWN,
        nr32::FCHOWN16 | nr32::FCHOWN => nr::FCHOWN,
        nr32::RENAME => nr::RENAME,
        nr32::MKDIR => nr::MKDIR,
        nr32::RMDIR => nr::RMDIR,
        nr32::SYMLINK => nr::SYMLINK,
        nr32::TRUNCATE | nr32::TRUNCATE64 => nr::TRUNCATE,
        nr32::FTRUNCATE | nr32::FTRUNCATE64 => nr::FTRUNCATE,
        nr32::FCHMOD => nr::FCHMOD,
        nr32::SETXATTR => nr::SETXATTR,
        nr32::LSETXATTR => nr::LSETXATTR,
        nr32::FSETXATTR => nr::FSETXATTR,
        nr32::REMOVEXATTR => nr::REMOVEXATTR,
        nr32::LREMOVEXATTR => nr::LREMOVEXATTR,
        nr32::FREMOVEXATTR => nr::FREMOVEXATTR,
        nr32::UTIME => nr::UTIME,
        nr32::UTIMES => nr::UTIMES,
        nr32::OPENAT => nr::OPENAT,
        nr32::MKDIRAT => nr::MKDIRAT,
        nr32::MKNODAT => nr::MKNODAT,
        nr32::FCHOWNAT => nr::FCHOWNAT,
        nr32::FUTIMESAT => nr::FUTIMESAT,
        nr32::UNLINKAT => nr::UNLINKAT,
        nr32::RENAMEAT => nr::RENAMEAT,
        nr32::LINKAT => nr::LINKAT,
        nr32::SYMLINKAT => nr::SYMLINKAT,
        nr32::FCHMODAT => nr::FCHMODAT,
        nr32::UTIMENSAT | nr32::UTIMENSAT_TIME64 => nr::UTIMENSAT,
        nr32::RENAMEAT2 => nr::RENAMEAT2,
        nr32::OPENAT2 => nr::OPENAT2,
        nr32::FCHMODAT2 => nr::FCHMODAT2,
        nr32::SETXATTRAT => nr::SETXATTRAT,
        nr32::REMOVEXATTRAT => nr::REMOVEXATTRAT,
        _ => return None,
    };
    let mut p = file::file_args_from(native, recorded, a)?;
    match nr {
        // The 64-bit length arrives split in two registers.
        nr32::TRUNCATE64 | nr32::FTRUNCATE64 => (p.uid, p.gid) = (a(1) as u32, a(2) as u32),
        // 16-bit ids: -1 (unchanged) is 0xffff.
        nr32::LCHOWN16 | nr32::CHOWN16 | nr32::FCHOWN16 => {
            p.uid = widen16(p.uid);
            p.gid = widen16(p.gid);
        }
        _ => {}
    }
    Some(p)
}

#[inline(always)]
fn widen16(id: u32) -> u32 {
    if id & 0xffff == 0xffff {
        u32::MAX
    } else {
        id & 0xffff
    }
}

/// A 32-bit socket call, direct or through `socketcall(call, u32 args[])`.
#[inline(always)]
fn net_call(nr: i32, recorded: u32, args: &[u64; 6]) -> Option<PendingSyscall> {
    let (op, msghdr, real) = match nr {
        nr32::CONNECT => (net_op::CONNECT, false, *args),
        nr32::BIND => (net_op::BIND, false, *args),
        nr32::LISTEN => (net_op::LISTEN, false, *args),
        nr32::ACCEPT4 => (net_op::ACCEPT, false, *args),
        nr32::SENDTO => (net_op::SEND, false, *args),
        nr32::SENDMSG => (net_op::SEND, true, *args),
        nr32::SOCKETCALL => {
            let (op, msghdr) = match args[0] as u32 {
                socketcall::CONNECT => (net_op::CONNECT, false),
                socketcall::BIND => (net_op::BIND, false),
                socketcall::LISTEN => (net_op::LISTEN, false),
                socketcall::ACCEPT | socketcall::ACCEPT4 => (net_op::ACCEPT, false),
                socketcall::SENDTO => (net_op::SEND, false),
                socketcall::SENDMSG => (net_op::SEND, true),
                _ => return None,
            };
            let base = args[1] as *const u32;
            let mut real = [0u64; 6];
            for (i, slot) in real.iter_mut().enumerate() {
                // SAFETY: user memory through the checked helper.
                *slot = unsafe { bpf_probe_read_user(base.wrapping_add(i)) }.unwrap_or(0) as u64;
            }
            (op, msghdr, real)
        }
        _ => return None,
    };
    net::net_args(op, recorded, |i| real[i % 6], msghdr, true)
}

/// The [`sys_op`] of a 32-bit security call, or `COMPAT_OTHER` for one kept raw.
#[inline(always)]
fn sec_op(nr: i32, args: &[u64; 6]) -> Option<u32> {
    Some(match nr {
        nr32::SETUID16
        | nr32::SETGID16
        | nr32::SETREUID16
        | nr32::SETREGID16
        | nr32::SETGROUPS16
        | nr32::SETRESUID16
        | nr32::SETRESGID16
        | nr32::SETFSUID16
        | nr32::SETFSGID16
        | nr32::SETUID
        | nr32::SETGID
        | nr32::SETREUID
        | nr32::SETREGID
        | nr32::SETGROUPS
        | nr32::SETRESUID
        | nr32::SETRESGID
        | nr32::SETFSUID
        | nr32::SETFSGID => sys_op::CREDS,
        nr32::CAPSET => sys_op::CAPSET,
        nr32::PTRACE if sec::ptrace_recorded(args[0]) => sys_op::PTRACE,
        nr32::INIT_MODULE | nr32::FINIT_MODULE => sys_op::MODULE_LOAD,
        nr32::DELETE_MODULE => sys_op::MODULE_UNLOAD,
        nr32::BPF if sec::bpf_recorded(args[0]) => sys_op::BPF,
        nr32::MOUNT => sys_op::MOUNT,
        nr32::UMOUNT | nr32::UMOUNT2 => sys_op::UMOUNT,
        nr32::PIVOT_ROOT => sys_op::PIVOT_ROOT,
        nr32::UNSHARE => sys_op::UNSHARE,
        nr32::SETNS => sys_op::SETNS,
        nr32::MEMFD_CREATE => sys_op::MEMFD,
        nr32::ACCT
        | nr32::CHROOT
        | nr32::SETHOSTNAME
        | nr32::SWAPON
        | nr32::REBOOT
        | nr32::IOPERM
        | nr32::IOPL
        | nr32::SETDOMAINNAME
        | nr32::PERSONALITY
        | nr32::PRCTL
        | nr32::KEXEC_LOAD
        | nr32::PERF_EVENT_OPEN
        | nr32::OPEN_BY_HANDLE_AT
        | nr32::PROCESS_VM_WRITEV
        | nr32::SECCOMP
        | nr32::USERFAULTFD
        | nr32::IO_URING_SETUP
        | nr32::OPEN_TREE
        | nr32::MOVE_MOUNT
        | nr32::FSOPEN
        | nr32::FSMOUNT
        | nr32::PIDFD_GETFD
        | nr32::MOUNT_SETATTR
        | nr32::KILL => sys_op::COMPAT_OTHER,
        _ => return None,
    })
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn compat_sys_exit(ctx: RawTracePointContext) -> u32 {
    if !in_compat() {
        return 0;
    }
    let Some((pid, tgid)) = observed_task() else {
        return 0;
    };
    let ret: i64 = ctx.arg(1);
    // SAFETY: copied out before removal.
    if let Some(p) = unsafe { PENDING.get(&pid) }.copied() {
        let _ = PENDING.remove(&pid);
        if p.kind == RecordKind::FileOp as u32 {
            file::exit(pid, tgid, &p, ret);
        } else {
            net::exit(pid, tgid, &p, ret);
        }
        return 0;
    }
    let regs = Task::from_ptr(ctx.arg::<*const u8>(0));
    let nr = regs.read::<u64>(cap_off!(regs_orig_ax)) as i32;
    if nr == nr32::EXECVE || nr == nr32::EXECVEAT {
        exec::report_result(ret);
        return 0;
    }
    sec::exit(pid, tgid, ret);
    0
}
