//! Process and thread creation.

use core::mem::size_of;

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use lineage_common::{ForkRecord, RecordKind};

use crate::{
    emit::{header, observed_task, reserve, submit_flags},
    task::Task,
};

/// Raw tracepoint `task_newtask`, `TP_PROTO(struct task_struct *task, u64 clone_flags)`; runs in
/// the creator's context at the end of `copy_process` (the child's start time is already set).
/// The raw form gives the child's `task_struct`, which the classic format does not.
#[raw_tracepoint(tracepoint = "task_newtask")]
pub fn task_newtask(ctx: RawTracePointContext) -> u32 {
    let Some((pid, tgid)) = observed_task() else {
        return 0;
    };
    let child = Task::from_ptr(ctx.arg::<*const u8>(0));
    let clone_flags: u64 = ctx.arg(1);
    let hdr = header(RecordKind::Fork, size_of::<ForkRecord>(), pid, tgid);
    let Some(mut entry) = reserve::<ForkRecord>(RecordKind::Fork) else {
        return 0;
    };
    entry.write(ForkRecord {
        header: hdr,
        child_pid: child.pid(),
        child_tgid: child.tgid(),
        clone_flags,
        child_start_ns: child.start_ns(),
    });
    entry.submit(submit_flags());
    0
}
