//! Maps and load-time globals shared by every probe.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use lineage_common::{
    ExecArgsRecord, FileOpRecord, FilterConfig, FilterRule, KernelOffsets, PendingSyscall,
    COMM_LEN, FILTER_SLOTS, KIND_SLOTS, PATH_CAP,
};

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

/// Syscall arguments from entry, per thread id, until the exit probe reports the result. LRU so
/// a thread killed mid-syscall cannot leak an entry forever.
#[map]
pub static PENDING: LruHashMap<u32, PendingSyscall> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU scratch space for building one file record.
#[map]
pub static FILE_SCRATCH: PerCpuArray<FileOpRecord> = PerCpuArray::with_max_entries(1, 0);

/// Filter settings, rewritten by the agent at runtime (slot 0).
#[map]
pub static FILTER_CONFIG: Array<FilterConfig> = Array::with_max_entries(1, 0);

/// comm → rule.
#[map]
pub static COMM_FILTER: HashMap<[u8; COMM_LEN], FilterRule> = HashMap::with_max_entries(256, 0);

/// Path prefix → rule; the longest matching prefix decides.
#[map]
pub static PATH_FILTER: LpmTrie<[u8; PATH_CAP], FilterRule> = LpmTrie::with_max_entries(256, 0);

/// Per-CPU count of events each filter rule suppressed, by rule slot.
#[map]
pub static FILTERED: PerCpuArray<u64> = PerCpuArray::with_max_entries(FILTER_SLOTS, 0);

/// The agent's own tgid: its activity is never recorded (it would feed back on itself).
#[unsafe(no_mangle)]
pub static AGENT_TGID: u32 = 0;

/// Kernel struct offsets resolved by the agent from BTF.
#[unsafe(no_mangle)]
pub static OFFSETS: KernelOffsets = KernelOffsets::zeroed();

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
