//! Load-time configuration: values the agent resolves in userspace and writes into the eBPF
//! programs' read-only globals (`EbpfLoader::set_global`), so nothing needs a recompile.

/// Byte offsets inside kernel structs, resolved from the running kernel's BTF at load time.
///
/// Rust eBPF has no CO-RE field relocations, so the agent reads `/sys/kernel/btf/vmlinux`,
/// finds each member and hands the offsets to the programs. A zero `valid` means "not
/// resolved": the programs then leave the dependent fields zero instead of reading garbage.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// Non-zero once the agent has filled every field below.
    pub valid: u32,
    /// `task_struct.pid` (thread id).
    pub task_pid: u32,
    /// `task_struct.tgid` (process id).
    pub task_tgid: u32,
    /// `task_struct.real_parent` (pointer).
    pub task_real_parent: u32,
    /// `task_struct.group_leader` (pointer).
    pub task_group_leader: u32,
    /// `task_struct.start_boottime` (u64, ns since boot, suspend included).
    pub task_start_boottime: u32,
    /// `task_struct.exit_code` (int).
    pub task_exit_code: u32,
    /// `task_struct.cred` (pointer to `struct cred`).
    pub task_cred: u32,
    /// `cred.euid` (`kuid_t`, one u32).
    pub cred_euid: u32,
    /// `cred.egid` (`kgid_t`, one u32).
    pub cred_egid: u32,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 40);

#[cfg(feature = "user")]
// SAFETY: repr(C), only u32 fields, no padding (asserted above), every bit pattern valid.
unsafe impl aya::Pod for KernelOffsets {}
