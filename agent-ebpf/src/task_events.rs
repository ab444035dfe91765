//! Task-level events that are not syscalls of the actor's own: signals aimed at the agent
//! (someone trying to stop or pause the recorder) and comm changes (a process renaming itself,
//! e.g. to look like something else or to slip past a comm filter).
//!
//! Raw tracepoints, whose arguments are the C prototypes (stable across versions, no format
//! offsets): `signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task,
//! int group, int result)` and `task_rename(struct task_struct *task, const char *comm)`,
//! checked against Linux 6.18's BTF.

use core::mem::size_of;

use aya_ebpf::{
    helpers::generated::bpf_probe_read_kernel_str, macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use lineage_common::{CommChangeRecord, RecordKind, SignalRecord, COMM_LEN};

use crate::{
    cap_off,
    emit::{header, observed_task, reserve, submit_flags},
    filter,
    maps::agent_tgid,
    task::Task,
};

/// `SEND_SIG_NOINFO` / `SEND_SIG_PRIV` are small integers cast to pointers, not siginfo.
const SPECIAL_SIGINFO_MAX: u64 = 2;

#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn signal_generate(ctx: RawTracePointContext) -> u32 {
    let target = Task::from_ptr(ctx.arg::<*const u8>(2));
    if target.tgid() != agent_tgid() {
        return 0;
    }
    let Some((pid, tgid)) = observed_task() else {
        return 0;
    };
    if !filter::actor_allowed(&filter::config()) {
        return 0;
    }
    let info: u64 = ctx.arg(1);
    let code = if info > SPECIAL_SIGINFO_MAX {
        // kernel_siginfo: si_signo, si_errno, si_code.
        Task::from_ptr(info as *const u8).read::<i32>(8)
    } else {
        0
    };
    let hdr = header(RecordKind::Signal, size_of::<SignalRecord>(), pid, tgid);
    let Some(mut entry) = reserve::<SignalRecord>(RecordKind::Signal) else {
        return 0;
    };
    entry.write(SignalRecord {
        header: hdr,
        sig: ctx.arg::<u64>(0) as i32,
        code,
        target_pid: target.pid() as i32,
        result: ctx.arg::<u64>(4) as i32,
    });
    entry.submit(submit_flags());
    0
}

#[raw_tracepoint(tracepoint = "task_rename")]
pub fn task_rename(ctx: RawTracePointContext) -> u32 {
    let Some((pid, tgid)) = observed_task() else {
        return 0;
    };
    // exec names the task after the new program: the exec event already records that.
    let bit = cap_off!(task_in_execve_bit);
    let word: u32 = Task::current().read((bit / 32) * 4);
    if word & (1 << (bit % 32)) != 0 {
        return 0;
    }
    // Judged on the comm before the change: a rename cannot hide itself from a comm rule.
    if !filter::actor_allowed(&filter::config()) {
        return 0;
    }
    let target = Task::from_ptr(ctx.arg::<*const u8>(0));
    let new_comm: u64 = ctx.arg(1);
    let hdr = header(
        RecordKind::CommChange,
        size_of::<CommChangeRecord>(),
        pid,
        tgid,
    );
    let Some(mut entry) = reserve::<CommChangeRecord>(RecordKind::CommChange) else {
        return 0;
    };
    let rec = entry.write(CommChangeRecord {
        header: hdr,
        target_pid: target.pid(),
        ..Default::default()
    });
    // SAFETY: kernel memory through the checked helper; both buffers are COMM_LEN bytes.
    unsafe {
        bpf_probe_read_kernel_str(
            rec.old_comm.as_mut_ptr().cast(),
            COMM_LEN as u32,
            target.field_ptr(cap_off!(task_comm)).cast(),
        );
        bpf_probe_read_kernel_str(
            rec.new_comm.as_mut_ptr().cast(),
            COMM_LEN as u32,
            new_comm as *const _,
        );
    }
    entry.submit(submit_flags());
    0
}
