//! Security-relevant syscalls outside the file and socket families: credential changes
//! (setuid/setgid/setre*/setres*/setgroups/setfs*, capset) with the caller's credentials before
//! and after, ptrace attach and pokes, module load/unload, bpf() loads and map writes, mounts,
//! pivot_root, unshare/setns and memfd_create.
//!
//! `sys_enter_sec` / `sys_exit_sec` are attached to each syscall's `syscalls/sys_enter_*` and
//! `sys_exit_*` tracepoints (argument `i` at 16 + 8·i, `ret` at 16; Linux 6.1 and 6.18). The
//! compat probe feeds 32-bit calls through [`enter`] and [`exit`]. Strings are read from the
//! caller's memory at exit.

use aya_ebpf::{
    helpers::{bpf_probe_read_user, generated::bpf_probe_read_user_str},
    macros::tracepoint,
    programs::TracePointContext,
};
use lineage_common::{sys_op, Ids, RecordKind, SyscallRecord, PATH_CAP, SYSCALL_COMPAT};

use crate::{
    cap_off,
    emit::{count_failure, header, observed_task, submit_flags},
    filter,
    maps::{offsets, SysPending, EVENTS, SYSCALL_SCRATCH, SYS_PENDING},
    syscalls::{nr, nr32},
    task::Task,
};

#[inline(always)]
fn arg(ctx: &TracePointContext, i: usize) -> u64 {
    // SAFETY: syscall tracepoint arguments are 8-byte slots from offset 16.
    unsafe { ctx.read_at::<u64>(16 + 8 * i) }.unwrap_or(0)
}

/// ptrace requests that take control of or change another process.
#[inline(always)]
pub fn ptrace_recorded(request: u64) -> bool {
    // TRACEME, POKETEXT, POKEDATA, POKEUSR, SETREGS, SETFPREGS, ATTACH, SETREGSET, SEIZE
    matches!(request, 0 | 4 | 5 | 6 | 13 | 15 | 16 | 0x4205 | 0x4206)
}

/// bpf() commands that create or change kernel state (loads, map writes, attaches, pins).
#[inline(always)]
pub fn bpf_recorded(cmd: u64) -> bool {
    // MAP_CREATE, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, PROG_LOAD, OBJ_PIN, PROG_ATTACH,
    // PROG_DETACH, RAW_TRACEPOINT_OPEN, BTF_LOAD, MAP_FREEZE, LINK_CREATE, LINK_UPDATE,
    // LINK_DETACH, PROG_BIND_MAP, TOKEN_CREATE
    matches!(
        cmd,
        0 | 2 | 3 | 5 | 6 | 8 | 9 | 17 | 18 | 22 | 28 | 29 | 34 | 35 | 36
    )
}

/// The [`sys_op`] of a native syscall, if it is one we record.
#[inline(always)]
fn native_op(syscall: i32, a: &impl Fn(usize) -> u64) -> Option<u32> {
    Some(match syscall {
        nr::SETUID
        | nr::SETGID
        | nr::SETREUID
        | nr::SETREGID
        | nr::SETRESUID
        | nr::SETRESGID
        | nr::SETGROUPS
        | nr::SETFSUID
        | nr::SETFSGID => sys_op::CREDS,
        nr::CAPSET => sys_op::CAPSET,
        nr::PTRACE if ptrace_recorded(a(0)) => sys_op::PTRACE,
        nr::INIT_MODULE | nr::FINIT_MODULE => sys_op::MODULE_LOAD,
        nr::DELETE_MODULE => sys_op::MODULE_UNLOAD,
        nr::BPF if bpf_recorded(a(0)) => sys_op::BPF,
        nr::MOUNT => sys_op::MOUNT,
        nr::UMOUNT2 => sys_op::UMOUNT,
        nr::PIVOT_ROOT => sys_op::PIVOT_ROOT,
        nr::UNSHARE => sys_op::UNSHARE,
        nr::SETNS => sys_op::SETNS,
        nr::MEMFD_CREATE => sys_op::MEMFD,
        _ => return None,
    })
}

#[tracepoint]
pub fn sys_enter_sec(ctx: TracePointContext) -> u32 {
    let Some((pid, _)) = observed_task() else {
        return 0;
    };
    // SAFETY: `__syscall_nr` is at offset 8 of every syscall tracepoint.
    let syscall: i32 = unsafe { ctx.read_at(8) }.unwrap_or(-1);
    let a = |i| arg(&ctx, i);
    if let Some(op) = native_op(syscall, &a) {
        enter(
            pid,
            syscall as u32,
            op,
            [a(0), a(1), a(2), a(3), a(4), a(5)],
        );
    }
    0
}

#[tracepoint]
pub fn sys_exit_sec(ctx: TracePointContext) -> u32 {
    let Some((pid, tgid)) = observed_task() else {
        return 0;
    };
    // SAFETY: `ret` is at offset 16.
    let result: i64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    exit(pid, tgid, result);
    0
}

/// The current task's credentials (`[uid, gid, suid, sgid, euid, egid, fsuid, fsgid]`) and
/// effective capabilities.
#[inline(always)]
fn current_creds() -> (Ids, u64) {
    let cred = Task::current().read_ptr(offsets().task_cred);
    (
        [
            cred.read(cap_off!(cred_uid)),
            cred.read(cap_off!(cred_gid)),
            cred.read(cap_off!(cred_suid)),
            cred.read(cap_off!(cred_sgid)),
            cred.read(cap_off!(cred_euid)),
            cred.read(cap_off!(cred_egid)),
            cred.read(cap_off!(cred_fsuid)),
            cred.read(cap_off!(cred_fsgid)),
        ],
        cred.read(cap_off!(cred_cap_effective)),
    )
}

/// Keeps a recorded call (after the actor filter) for the exit probe.
#[inline(always)]
pub fn enter(pid: u32, syscall_nr: u32, op: u32, args: [u64; 6]) {
    if !filter::actor_allowed(&filter::config()) {
        return;
    }
    let (old_ids, old_caps) = if matches!(op, sys_op::CREDS | sys_op::CAPSET) {
        current_creds()
    } else {
        ([0; 8], 0)
    };
    let pending = SysPending {
        syscall_nr,
        op,
        args,
        old_ids,
        old_caps,
    };
    let _ = SYS_PENDING.insert(&pid, &pending, 0);
}

/// Reads a user string into a `PATH_CAP` field; returns its length without the NUL.
#[inline(always)]
fn user_str(dst: *mut u8, src: u64, cap: u32) -> u32 {
    if src == 0 {
        return 0;
    }
    // SAFETY: the helper validates the user address and writes at most `cap` bytes.
    let n = unsafe { bpf_probe_read_user_str(dst.cast(), cap, src as *const _) };
    if n > 0 {
        (n as u32 - 1) & (PATH_CAP as u32 - 1)
    } else {
        0
    }
}

/// Emits the record of a finished call kept by [`enter`]; nothing if none is pending.
#[inline(always)]
pub fn exit(pid: u32, tgid: u32, result: i64) {
    // SAFETY: copied out before removal.
    let Some(p) = (unsafe { SYS_PENDING.get(&pid) }).copied() else {
        return;
    };
    let _ = SYS_PENDING.remove(&pid);
    let Some(rec) = SYSCALL_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `rec` is this CPU's scratch slot; user memory goes through the checked helpers.
    unsafe {
        let (new_ids, new_caps) = if matches!(p.op, sys_op::CREDS | sys_op::CAPSET) {
            current_creds()
        } else {
            ([0; 8], 0)
        };
        let mut args = p.args;
        let s1 = (*rec).str1.as_mut_ptr();
        let s2 = (*rec).str2.as_mut_ptr();
        let cap = PATH_CAP as u32;
        let (mut l1, mut l2) = (0, 0);
        match p.op {
            // init_module(image, len, params) / finit_module(fd, params, flags): the parameters.
            sys_op::MODULE_LOAD => {
                let finit = p.syscall_nr == nr::FINIT_MODULE as u32
                    || p.syscall_nr == nr32::FINIT_MODULE as u32 | SYSCALL_COMPAT;
                let params = if finit { args[1] } else { args[2] };
                l1 = user_str(s1, params, cap);
            }
            sys_op::MODULE_UNLOAD | sys_op::MEMFD => l1 = user_str(s1, args[0], cap),
            sys_op::MOUNT | sys_op::PIVOT_ROOT => {
                l1 = user_str(s1, args[0], cap);
                l2 = user_str(s2, args[1], cap);
            }
            sys_op::UMOUNT => l2 = user_str(s2, args[0], cap),
            sys_op::BPF => {
                // bpf(cmd, attr, size) has three arguments: the other slots carry the first
                // three words of `union bpf_attr` (types, sizes, target fds), and str1 the
                // program (PROG_LOAD, name at 48) or map (MAP_CREATE, name at 28) name.
                let attr = args[1] as *const u64;
                for i in 0..3 {
                    args[3 + i] = bpf_probe_read_user(attr.wrapping_add(i)).unwrap_or(0);
                }
                let name_at = match args[0] {
                    5 => 48,
                    0 => 28,
                    _ => 0,
                };
                if name_at != 0 {
                    l1 = user_str(s1, args[1] + name_at, 16);
                }
            }
            _ => {}
        }
        let len = core::mem::size_of::<SyscallRecord>();
        (*rec).header = header(RecordKind::Syscall, len, pid, tgid);
        (*rec).syscall_nr = p.syscall_nr;
        (*rec).op = p.op;
        (*rec).result = result;
        (*rec).args = args;
        (*rec).old_ids = p.old_ids;
        (*rec).new_ids = new_ids;
        (*rec).old_caps = p.old_caps;
        (*rec).new_caps = new_caps;
        (*rec).str1_len = l1;
        (*rec).str2_len = l2;
        let bytes = core::slice::from_raw_parts(rec as *const u8, len);
        if EVENTS.output::<[u8]>(bytes, submit_flags()).is_err() {
            count_failure(RecordKind::Syscall);
        }
    }
}
