//! Exec capture from the kernel's own state of the new image.
//!
//! `sched_process_exec` runs after the point of no return, in the new image: argv is read from
//! the new `mm` (`arg_start..arg_end`, the kernel's copy, which no thread of the old image can
//! change any more), the executed file from `mm->exe_file` (path walked from its mount and
//! dentries, plus device, inode, size and mtime), and who runs it (audit login uid, session id,
//! controlling terminal). The entry probe still sends the argv the caller passed (`ExecArgs`):
//! a failed exec ran nothing, so that is all there is to record for it, joined in userspace by
//! thread id; for a successful exec it is superseded by the new image's argv.
//! Checked against the syscall and sched tracepoint formats of Linux 6.1 and 6.18.

use core::mem::size_of;

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_probe_read_user,
        generated::{
            bpf_get_current_cgroup_id, bpf_probe_read_kernel_str, bpf_probe_read_user_str,
        },
    },
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use lineage_common::{
    exec_flags, path_flags, ExecArgsRecord, ExecFailedRecord, ExecRecord, RecordKind, ARGS_CAP,
    EXEC_ARGS_FIXED_LEN, EXEC_FIXED_LEN, MAX_ARGS, PATH_CAP, TTY_CAP,
};

use crate::{
    emit::{count_failure, header, observed_task, reserve, submit_flags},
    maps::{offsets, EVENTS, EXEC_ARGS_SCRATCH, EXEC_SCRATCH},
    path,
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
fn try_exec(ctx: &TracePointContext) -> Option<()> {
    let (pid, tgid) = observed_task()?;
    // SAFETY: offsets from the sched_process_exec format.
    let data_loc: u32 = unsafe { ctx.read_at(8) }.ok()?;
    let old_tid: i32 = unsafe { ctx.read_at(16) }.ok()?;
    let rec: *mut ExecRecord = EXEC_SCRATCH.get_ptr_mut(0)?;
    let task = Task::current();
    let parent = task.real_parent();
    let off = offsets();
    // SAFETY: `rec` is this CPU's scratch slot; kernel and user memory is read through the
    // checked helpers.
    unsafe {
        (*rec).old_tid = old_tid as u32;
        (*rec).parent_tgid = parent.tgid();
        (*rec).parent_start_ns = parent.process_start_ns();
        (*rec).cgroup_id = bpf_get_current_cgroup_id();
        (*rec).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        let src = (ctx.as_ptr() as *const u8).wrapping_add((data_loc & 0xffff) as usize);
        let n = bpf_probe_read_kernel_str(
            (*rec).filename.as_mut_ptr().cast(),
            PATH_CAP as u32,
            src.cast(),
        );
        (*rec).filename_len = if n > 0 {
            (n as u32 - 1) & (PATH_CAP as u32 - 1)
        } else {
            0
        };
        // data_loc's high half is the kernel's length including the NUL.
        let mut flags = if (data_loc >> 16) as usize > PATH_CAP {
            exec_flags::FILENAME_TRUNCATED
        } else {
            0
        };

        // The executed file, as the kernel holds it.
        let exe = task.exe_file();
        if exe.is_null() {
            flags |= exec_flags::NO_EXE;
            (*rec).exe_len = 0;
            (*rec).exe_dev = 0;
            (*rec).exe_ino = 0;
        } else {
            let (walked, dev, ino) = path::resolve_file(exe, (*rec).exe.as_mut_ptr());
            (*rec).exe_len = walked.len;
            (*rec).exe_dev = dev;
            (*rec).exe_ino = ino;
            if walked.flags & path_flags::PATH_TRUNCATED != 0 {
                flags |= exec_flags::EXE_TRUNCATED;
            }
            if walked.flags & path_flags::PATH_DELETED != 0 {
                flags |= exec_flags::EXE_DELETED;
            }
        }
        let inode = exe.read_ptr(off.file_f_inode);
        (*rec).exe_size = inode.read(off.inode_i_size);
        (*rec).exe_mtime_sec = inode.read(off.inode_i_mtime_sec);
        (*rec).exe_mtime_nsec = inode.read(off.inode_i_mtime_nsec);

        // Who: audit login uid and session, controlling terminal.
        (*rec).loginuid = task.read(off.task_loginuid);
        (*rec).sessionid = task.read(off.task_sessionid);
        (*rec).tty = [0; TTY_CAP];
        let tty = task.read_ptr(off.task_signal).read_ptr(off.signal_tty);
        if !tty.is_null() {
            bpf_probe_read_kernel_str(
                (*rec).tty.as_mut_ptr().cast(),
                TTY_CAP as u32,
                tty.plus(off.tty_name).addr() as *const _,
            );
        }

        // argv from the new image: the kernel's copy, laid out NUL-separated.
        let mm = task.read_ptr(off.task_mm);
        let start: u64 = mm.read(off.mm_arg_start);
        let end: u64 = mm.read(off.mm_arg_end);
        let mut args_len = end.saturating_sub(start) as usize;
        if args_len > ARGS_CAP {
            args_len = ARGS_CAP;
            flags |= exec_flags::ARGS_TRUNCATED;
        }
        if args_len > 0
            && bpf_probe_read_user_buf_raw((*rec).args.as_mut_ptr(), args_len, start) != 0
        {
            flags |= exec_flags::ARGS_READ_FAILED;
            args_len = 0;
        }
        (*rec).args_len = args_len as u32;
        (*rec).flags = flags;
        let len = EXEC_FIXED_LEN + args_len;
        (*rec).header = header(RecordKind::Exec, len, pid, tgid);
        let bytes = core::slice::from_raw_parts(rec as *const u8, len);
        if EVENTS.output::<[u8]>(bytes, submit_flags()).is_err() {
            count_failure(RecordKind::Exec);
            // Fail closed: an exec that cannot be recorded does not run (in enforce mode).
            crate::enforce::exec_unrecorded(ctx);
        }
    }
    Some(())
}

/// `bpf_probe_read_user` of `len` (1..=ARGS_CAP) bytes; 0 on success.
#[inline(always)]
unsafe fn bpf_probe_read_user_buf_raw(dst: *mut u8, len: usize, src: u64) -> i64 {
    if len == 0 || len > ARGS_CAP {
        return -1;
    }
    // SAFETY: `dst` has ARGS_CAP bytes; the helper validates the source.
    unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(dst.cast(), len as u32, src as *const _)
    }
}
