//! Sequence numbers, loss counting and submission: the parts every probe shares.
//!
//! Each reservation attempt takes the next per-CPU sequence number first; when the ring buffer
//! is full the failure is counted per CPU and kind. Userspace sees the gap in the sequence and
//! the counter that explains it, so no loss is silent.

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
    },
    maps::ring_buf::RingBufEntry,
};
use lineage_common::{RecordHeader, RecordKind};

use crate::{
    maps::{agent_tgid, EVENTS, RESERVE_FAILURES, RING_FILL, SEQUENCE, WAKEUP_BYTES},
    task::Task,
};

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// The acting task, unless it belongs to the agent itself.
#[inline(always)]
pub fn observed_task() -> Option<(u32, u32)> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == agent_tgid() {
        return None;
    }
    Some((pid_tgid as u32, tgid))
}

#[inline(always)]
fn next_seq() -> u64 {
    match SEQUENCE.get_ptr_mut(0) {
        // SAFETY: per-CPU slot; programs on one CPU do not run concurrently with each other
        // for the same slot except through preemption, which at worst reorders two records.
        Some(slot) => unsafe {
            let seq = *slot;
            *slot = seq + 1;
            seq
        },
        None => 0,
    }
}

#[inline(always)]
pub fn count_failure(kind: RecordKind) {
    if let Some(slot) = RESERVE_FAILURES.get_ptr_mut(kind as u32) {
        // SAFETY: per-CPU slot.
        unsafe { *slot += 1 };
    }
}

/// A header for a record about the current task, with its real and effective credentials;
/// takes the next sequence number.
#[inline(always)]
pub fn header(kind: RecordKind, len: usize, pid: u32, tgid: u32) -> RecordHeader {
    let task = Task::current();
    let (euid, egid) = task.effective_ids();
    let uid_gid = bpf_get_current_uid_gid();
    RecordHeader {
        kind: kind as u32,
        len: len as u32,
        seq: next_seq(),
        // SAFETY: the helpers have no preconditions.
        ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
        proc_start_ns: task.process_start_ns(),
        cpu: unsafe { bpf_get_smp_processor_id() },
        pid,
        tgid,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        euid,
        egid,
        _pad: 0,
    }
}

/// Reserve a fixed-size record; a full ring buffer is counted, never silent.
#[inline(always)]
pub fn reserve<T: 'static>(kind: RecordKind) -> Option<RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count_failure(kind);
    }
    entry
}

/// Submit flags: no wakeup per record; wake the reader only when the ring is filling up.
#[inline(always)]
pub fn submit_flags() -> u64 {
    let size = EVENTS.query(BPF_RB_RING_SIZE);
    let used = EVENTS.query(BPF_RB_AVAIL_DATA);
    if let Some(slot) = RING_FILL.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe { *slot = used };
    }
    // SAFETY: a read-only global written by the loader.
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) };
    if size.saturating_sub(used) < threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}
