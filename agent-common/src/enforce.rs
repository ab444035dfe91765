//! Enforcement: the kernel/user contract for the liveness deadline, the allowlist, deny rules
//! and the decision records the programs write (docs/ENFORCEMENT.md).

use crate::{COMM_LEN, PATH_CAP};

/// What the enforcement programs do with a decision (`EnforceConfig::mode`).
pub mod enforce_mode {
    /// Decide nothing (the programs return at once).
    pub const OBSERVE: u32 = 0;
    /// Deny: SIGKILL the new image, refuse the connect with EPERM.
    pub const ENFORCE: u32 = 1;
    /// Decide and record "would deny"; stop nothing.
    pub const DRY_RUN: u32 = 2;
}

/// Why a decision was taken. Also the slot in the per-CPU decision counters; slot
/// `reason + RECORD_LOST_BASE` counts decisions whose record could not be written.
pub mod deny_reason {
    /// The agent's heartbeat is older than the deadline (stopped, frozen, disk full...).
    pub const HEARTBEAT: u32 = 1;
    /// The capture record of this action could not be reserved (ring buffer full).
    pub const UNRECORDED: u32 = 2;
    /// A deny rule matched (its id is in the record).
    pub const RULE: u32 = 3;
}

/// What was decided about (`EnforceRecord::target`).
pub mod enforce_target {
    pub const EXEC: u32 = 1;
    pub const CONNECT: u32 = 2;
}

/// Counter slots: `reason` for decisions taken, `RECORD_LOST_BASE + reason` for decisions
/// whose record could not be written.
pub const ENFORCE_SLOTS: u32 = 8;
pub const RECORD_LOST_BASE: u32 = 4;

/// Kernel-side settings (slot 0 of `ENFORCE_CONFIG`), rewritten by the agent at runtime.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforceConfig {
    pub mode: u32,
    /// Non-zero: only tasks in (a descendant of) a cgroup of `ENFORCE_SCOPE` are subject.
    pub scoped: u32,
    /// Heartbeat age beyond which execs and connects are denied, in ns.
    pub deadline_ns: u64,
}

/// Connect deny-rule keys (LPM trie data): destination port in network order (0 in rules that
/// match any port), then the address; prefix length = 16 + CIDR bits. The v4 key has 2 bytes
/// of zero padding so that both key sizes are whole words.
pub const NET4_KEY_LEN: usize = 8;
pub const NET6_KEY_LEN: usize = 18;

/// One decision, written to the `DECISIONS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnforceRecord {
    /// `bpf_ktime_get_boot_ns` at the decision.
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub target: u32,
    pub reason: u32,
    /// Rule id for `deny_reason::RULE`, else 0.
    pub rule_id: u32,
    /// The mode the decision was taken in: `ENFORCE` (denied) or `DRY_RUN` (would deny).
    pub mode: u32,
    /// Heartbeat age at the decision, in ns.
    pub heartbeat_age_ns: u64,
    /// Connect: address family, port (host order), address bytes.
    pub family: u16,
    pub port: u16,
    pub addr_len: u32,
    pub addr: [u8; 16],
    pub comm: [u8; COMM_LEN],
    /// Exec: the filename the kernel executed.
    pub filename_len: u32,
    /// `filename_len * 8`: with `filename` it forms the LPM trie key for path rules.
    pub prefix_bits: u32,
    pub filename: [u8; PATH_CAP],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<EnforceConfig>() == 16);
    assert!(offset_of!(EnforceRecord, heartbeat_age_ns) == 48);
    assert!(offset_of!(EnforceRecord, addr) == 64);
    assert!(offset_of!(EnforceRecord, filename) == 104);
    assert!(size_of::<EnforceRecord>() == 104 + PATH_CAP);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain integers and byte arrays, no padding (asserted above).
    unsafe impl aya::Pod for super::EnforceConfig {}
}
