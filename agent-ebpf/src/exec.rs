//! Exec capture: argv at syscall entry, the outcome at `sched_process_exec` or syscall exit.
//!
//! argv is only reliably readable at `sys_enter_execve(at)` (after a successful exec the old
//! address space is gone), so the entry probe sends an `ExecArgs` record and the outcome probes
//! send small `Exec` / `ExecFailed` records; userspace joins them by thread id, in ring order.
//! Checked against the syscall and sched tracepoint formats of Linux 6.1 and 6.18.

use core::mem::size_of;

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_uid_gid, bpf_probe_read_user,
        generated::{
            bpf_get_current_cgroup_id, bpf_probe_read_kernel_str, bpf_probe_read_user_str,
        },
    },
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use lineage_common::{
    exec_flags, ExecArgsRecord, ExecFailedRecord, ExecRecord, RecordKind, ARGS_CAP,
    EXEC_ARGS_FIXED_LEN, MAX_ARGS, PATH_CAP,
};

use crate::{
    emit::{count_failure, header, observed_task, reserve, submit_flags},
    maps::{EVENTS, EXEC_ARGS_SCRATCH},
    task::Task,
};

const AT_FDCWD: i32 = -100;

/// `syscalls/sys_enter_execve`: `filename` at 16, `argv` at 24.
#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    capture_args(&ctx, None, 16, 24);
    0
}

/// `syscalls/sys_enter_execveat`: `fd` at 16, `filename` at 24, `argv` at 32.
#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    capture_args(&ctx, Some(16), 24, 32);
    0
}

/// `syscalls/sys_exit_execve`: `ret` at 16.
#[tracepoint]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    report_failure(&ctx);
    0
}

/// `syscalls/sys_exit_execveat`: `ret` at 16.
#[tracepoint]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    report_failure(&ctx);
    0
}

/// `sched/sched_process_exec`: `__data_loc filename` at 8, `pid` at 12, `old_pid` at 16.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

/// Reads one byte of user memory; `None` if unreadable.
#[inline(always)]
fn user_byte(ptr: *const u8) -> Option<u8> {
    // SAFETY: the helper validates the address.
    unsafe { bpf_probe_read_user(ptr) }.ok()
}

#[inline(always)]
fn capture_args(
    ctx: &TracePointContext,
    fd_offset: Option<usize>,
    name_off: usize,
    argv_off: usize,
) {
    // SAFETY: tracepoint arguments are read by offset from the documented format.
    let (filename, argv, dirfd) = unsafe {
        (
            ctx.read_at::<u64>(name_off).unwrap_or(0),
            ctx.read_at::<u64>(argv_off).unwrap_or(0),
            match fd_offset {
                Some(off) => ctx.read_at::<i64>(off).unwrap_or(0) as i32,
                None => AT_FDCWD,
            },
        )
    };
    capture(filename, argv, dirfd, false);
}

/// One argv entry: a 64-bit pointer, or a 32-bit one for a compat exec.
#[inline(always)]
fn argv_entry(argv: u64, i: u32, compat: bool) -> Result<u64, i32> {
    // SAFETY: user memory through the checked helper.
    unsafe {
        if compat {
            bpf_probe_read_user((argv as *const u32).wrapping_add(i as usize)).map(u64::from)
        } else {
            bpf_probe_read_user((argv as *const u64).wrapping_add(i as usize))
        }
    }
}

/// Sends an `ExecArgs` record for an exec about to run: `filename` and `argv` are user
/// pointers; `compat` marks a 32-bit exec whose argv holds 32-bit pointers.
#[inline(always)]
pub fn capture(filename: u64, argv: u64, dirfd: i32, compat: bool) {
    let Some((pid, tgid)) = observed_task() else {
        return;
    };
    let Some(scratch) = EXEC_ARGS_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the scratch slot is this CPU's; user pointers are validated by the helpers.
    unsafe {
        let rec: *mut ExecArgsRecord = &raw mut (*scratch).record;
        let filename = filename as *const u8;
        let mut flags = if compat { exec_flags::COMPAT } else { 0 };

        let name_buf = (*rec).filename.as_mut_ptr();
        let n = bpf_probe_read_user_str(name_buf.cast(), PATH_CAP as u32, filename.cast());
        let filename_len = if n > 0 {
            (n as u32 - 1) & (PATH_CAP as u32 - 1)
        } else {
            0
        };
        if filename_len as usize == PATH_CAP - 1
            && user_byte(filename.wrapping_add(PATH_CAP - 1)) != Some(0)
        {
            flags |= exec_flags::FILENAME_TRUNCATED;
        }

        // Each string is read with room for a whole ARGS_CAP at any offset below ARGS_CAP
        // (the scratch slot has that much slack), which is what the verifier needs to see.
        let args = (*rec).args.as_mut_ptr();
        let mut off: usize = 0;
        let mut argc: u32 = 0;
        let mut i: u32 = 0;
        while i < MAX_ARGS {
            let Ok(arg) = argv_entry(argv, i, compat) else {
                flags |= exec_flags::ARGS_READ_FAILED;
                break;
            };
            if arg == 0 {
                break;
            }
            let arg = arg as *const u8;
            if off >= ARGS_CAP {
                flags |= exec_flags::ARGS_TRUNCATED;
                break;
            }
            let dst = args.wrapping_add(off & (ARGS_CAP - 1));
            let n = bpf_probe_read_user_str(dst.cast(), ARGS_CAP as u32, arg.cast());
            if n <= 0 {
                flags |= exec_flags::ARGS_READ_FAILED;
                break;
            }
            let n = (n as usize) & (2 * ARGS_CAP - 1);
            argc += 1;
            off += n;
            if n >= ARGS_CAP || off > ARGS_CAP {
                // The string filled all the room it had, or ran past the cap: cut at the cap.
                flags |= exec_flags::ARGS_TRUNCATED;
                off = ARGS_CAP;
                break;
            }
            i += 1;
        }
        if i == MAX_ARGS {
            if let Ok(next) = argv_entry(argv, MAX_ARGS, compat) {
                if next != 0 {
                    flags |= exec_flags::ARGS_TOO_MANY;
                }
            }
        }

        let args_len = off & (2 * ARGS_CAP - 1);
        let len = EXEC_ARGS_FIXED_LEN + args_len;
        (*rec).header = header(RecordKind::ExecArgs, len, pid, tgid);
        (*rec).argc = argc;
        (*rec).flags = flags;
        (*rec).dirfd = dirfd;
        (*rec).filename_len = filename_len;
        (*rec).args_len = args_len as u32;
        (*rec)._pad = 0;

        let bytes = core::slice::from_raw_parts(scratch as *const u8, len);
        if EVENTS.output::<[u8]>(bytes, submit_flags()).is_err() {
            count_failure(RecordKind::ExecArgs);
        }
    }
}

#[inline(always)]
fn report_failure(ctx: &TracePointContext) {
    // SAFETY: `ret` is at offset 16 in the sys_exit format.
    let ret: i64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    report_result(ret);
}

/// Sends an `ExecFailed` record when an exec returned an error.
#[inline(always)]
pub fn report_result(ret: i64) {
    if ret >= 0 {
        return;
    }
    let Some((pid, tgid)) = observed_task() else {
        return;
    };
    let hdr = header(
        RecordKind::ExecFailed,
        size_of::<ExecFailedRecord>(),
        pid,
        tgid,
    );
    let Some(mut entry) = reserve::<ExecFailedRecord>(RecordKind::ExecFailed) else {
        return;
    };
    entry.write(ExecFailedRecord {
        header: hdr,
        errno: (-ret) as i32,
        _pad: 0,
    });
    entry.submit(submit_flags());
}

#[inline(always)]
fn try_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let Some((pid, tgid)) = observed_task() else {
        return Ok(());
    };
    // SAFETY: offsets from the sched_process_exec format.
    let data_loc: u32 = unsafe { ctx.read_at(8) }.map_err(|e| e as i64)?;
    let old_tid: i32 = unsafe { ctx.read_at(16) }.map_err(|e| e as i64)?;

    let hdr = header(RecordKind::Exec, size_of::<ExecRecord>(), pid, tgid);
    let Some(mut entry) = reserve::<ExecRecord>(RecordKind::Exec) else {
        // Fail closed: an exec that cannot be recorded does not run (in enforce mode).
        crate::enforce::exec_unrecorded(ctx);
        return Ok(());
    };
    let task = Task::current();
    let parent = task.real_parent();
    let (euid, egid) = task.effective_ids();
    let uid_gid = bpf_get_current_uid_gid();
    let rec = entry.as_mut_ptr();
    // SAFETY: `rec` points at a reserved, exclusively owned ring-buffer slot of the right size;
    // every field is written before submit.
    unsafe {
        (*rec).header = hdr;
        (*rec).old_tid = old_tid as u32;
        (*rec).parent_tgid = parent.tgid();
        (*rec).parent_start_ns = parent.process_start_ns();
        (*rec).uid = uid_gid as u32;
        (*rec).gid = (uid_gid >> 32) as u32;
        (*rec).euid = euid;
        (*rec).egid = egid;
        (*rec).cgroup_id = bpf_get_current_cgroup_id();
        (*rec).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        let src = (ctx.as_ptr() as *const u8).wrapping_add((data_loc & 0xffff) as usize);
        let n = bpf_probe_read_kernel_str(
            (*rec).filename.as_mut_ptr().cast(),
            PATH_CAP as u32,
            src.cast(),
        );
        let len = if n > 0 {
            (n as u32 - 1) & (PATH_CAP as u32 - 1)
        } else {
            0
        };
        (*rec).filename_len = len;
        // data_loc's high half is the kernel's length including the NUL.
        (*rec).flags = if (data_loc >> 16) as usize > PATH_CAP {
            exec_flags::FILENAME_TRUNCATED
        } else {
            0
        };
    }
    entry.submit(submit_flags());
    Ok(())
}
