//! Maps and load-time globals shared by every probe.

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use lineage_common::{ExecArgsRecord, KernelOffsets, KIND_SLOTS};

/// The single ring buffer every record goes through (one MPSC queue keeps cross-CPU order).
/// Its size here is a placeholder: the agent sets it from config at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Per-CPU sequence counter (index 0): incremented on every reservation attempt.
#[map]
pub static SEQUENCE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU failed reservations, indexed by record kind.
#[map]
pub static RESERVE_FAILURES: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_SLOTS, 0);

/// Per-CPU bytes waiting in the ring buffer at this CPU's last submit (a fill gauge).
#[map]
pub static RING_FILL: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space for the one record too big for the BPF stack.
#[map]
pub static EXEC_ARGS_SCRATCH: PerCpuArray<ExecArgsScratch> = PerCpuArray::with_max_entries(1, 0);

/// An [`ExecArgsRecord`] followed by slack: the verifier must see that a string read at any
/// offset below `ARGS_CAP` with length `ARGS_CAP` stays inside the value.
#[repr(C)]
pub struct ExecArgsScratch {
    pub record: ExecArgsRecord,
    pub slack: [u8; lineage_common::ARGS_CAP],
}

/// The agent's own tgid: its activity is never recorded (it would feed back on itself).
#[unsafe(no_mangle)]
pub static AGENT_TGID: u32 = 0;

/// Kernel struct offsets resolved by the agent from BTF.
#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets {
    valid: 0,
    task_pid: 0,
    task_tgid: 0,
    task_real_parent: 0,
    task_group_leader: 0,
    task_start_boottime: 0,
    task_exit_code: 0,
    task_cred: 0,
    cred_euid: 0,
    cred_egid: 0,
};

/// Free ring-buffer bytes below which a submit wakes the reader at once. Above it records are
/// submitted without a wakeup and the agent drains on its poll interval.
#[unsafe(no_mangle)]
pub static WAKEUP_BYTES: u64 = 1 << 20;

#[inline(always)]
pub fn agent_tgid() -> u32 {
    // SAFETY: a read-only global written by the loader; volatile so the compiler cannot fold
    // the placeholder value.
    unsafe { core::ptr::read_volatile(&AGENT_TGID) }
}

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}
