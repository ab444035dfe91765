//! Maps and load-time globals shared by every probe.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use lineage_common::{
    CaptureOffsets, ExecArgsRecord, ExecRecord, FileOpRecord, FilterConfig, FilterRule, Ids,
    IoUringRecord, IoUringTpFields, KernelOffsets, PendingSyscall, SyscallRecord, COMM_LEN,
    FILTER_SLOTS, KIND_SLOTS, PATH_CAP,
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

/// Per-CPU scratch space for one io_uring record.
#[map]
pub static IO_URING_SCRATCH: PerCpuArray<IoUringRecord> = PerCpuArray::with_max_entries(1, 0);

/// io_uring requests recorded at submit (`struct io_kiocb *` → 1), so that only their
/// completions are recorded. LRU: a ring torn down with requests in flight cannot leak entries.
#[map]
pub static IO_URING_REQS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);

/// Per-CPU scratch space for one security-syscall record.
#[map]
pub static SYSCALL_SCRATCH: PerCpuArray<SyscallRecord> = PerCpuArray::with_max_entries(1, 0);

/// A security syscall's arguments and the caller's credentials at entry, per thread.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SysPending {
    pub syscall_nr: u32,
    pub op: u32,
    pub args: [u64; 6],
    pub old_ids: Ids,
    pub old_caps: u64,
}

#[map]
pub static SYS_PENDING: LruHashMap<u32, SysPending> = LruHashMap::with_max_entries(4096, 0);

/// (socket inode, family, port, address) of peers a socket already sent to: a send to a new
/// peer is recorded once, not per packet. LRU: an evicted peer is recorded again (a duplicate,
/// never a loss); inserts are counted in `PEER_INSERTS` so evictions can be derived.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PeerKey {
    pub ino: u64,
    pub family: u16,
    pub port: u16,
    pub _pad: u32,
    pub addr: [u8; 16],
}

#[map]
pub static SEND_PEERS: LruHashMap<PeerKey, u8> = LruHashMap::with_max_entries(8192, 0);

#[map]
pub static PEER_INSERTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch space for building one exec record.
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecRecord> = PerCpuArray::with_max_entries(1, 0);

/// End of the path-walk area in [`WALK_SCRATCH`] (`PATH_MAX`): names are written back to front
/// from here.
pub const WALK_END: usize = 4096;

/// Per-CPU state of a path walk (see `path.rs`).
#[map]
pub static WALK_SCRATCH: PerCpuArray<WalkScratch> = PerCpuArray::with_max_entries(1, 0);

/// Where a path walk is: kept in the map, not on the stack, so every `bpf_loop` step looks
/// alike to the verifier.
#[repr(C)]
pub struct WalkState {
    pub mnt: usize,
    pub dentry: usize,
    /// Start of the path written so far in `buf` (it grows towards 0).
    pub pos: u64,
    /// 1 once the root of the mount namespace (or of a detached tree) is reached.
    pub complete: u64,
}

/// The walk's state and the buffer it builds the path in, with slack so a name written at any
/// offset below [`WALK_END`] (and a record-sized copy from any such offset) stays inside it.
#[repr(C)]
pub struct WalkScratch {
    pub state: WalkState,
    pub buf: [u8; WALK_END + PATH_CAP],
}

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

/// Offsets for the compat, credential and io_uring probes (see [`CaptureOffsets`]).
#[unsafe(no_mangle)]
pub static CAPTURE_OFFSETS: CaptureOffsets = CaptureOffsets::zeroed();

/// io_uring tracepoint field offsets from tracefs.
#[unsafe(no_mangle)]
pub static IO_URING_TP: IoUringTpFields = IoUringTpFields::zeroed();

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

/// One field of [`CAPTURE_OFFSETS`], read volatile (the loader rewrites the placeholder); one
/// field at a time so the 200-byte struct is never copied onto the 512-byte BPF stack.
#[macro_export]
macro_rules! cap_off {
    ($field:ident) => {{
        #[allow(unused_unsafe)]
        // SAFETY: a read-only global written by the loader.
        let v =
            unsafe { core::ptr::read_volatile(&raw const $crate::maps::CAPTURE_OFFSETS.$field) };
        v
    }};
}

/// One field of [`IO_URING_TP`].
#[macro_export]
macro_rules! tp_off {
    ($field:ident) => {{
        #[allow(unused_unsafe)]
        // SAFETY: a read-only global written by the loader.
        let v = unsafe { core::ptr::read_volatile(&raw const $crate::maps::IO_URING_TP.$field) };
        v
    }};
}
