//! Task exit, with the exit code or terminating signal.

use core::mem::size_of;

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use lineage_common::{ExitRecord, RecordKind};

use crate::{
    emit::{header, observed_task, reserve, submit_flags},
    task::Task,
};

/// `sched/sched_process_exit`: `group_dead` (bool) at 32 since Linux 6.x. `do_exit` stores
/// `exit_code` in the task before this tracepoint fires, so it is read from the task.
#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let Some((pid, tgid)) = observed_task() else {
        return 0;
    };
    // SAFETY: offset from the tracepoint format.
    let group_dead: u8 = unsafe { ctx.read_at(32) }.unwrap_or(0);
    let hdr = header(RecordKind::Exit, size_of::<ExitRecord>(), pid, tgid);
    let Some(mut entry) = reserve::<ExitRecord>(RecordKind::Exit) else {
        return 0;
    };
    entry.write(ExitRecord {
        header: hdr,
        exit_code: Task::current().exit_code(),
        group_dead: u32::from(group_dead != 0),
    });
    entry.submit(submit_flags());
    0
}
