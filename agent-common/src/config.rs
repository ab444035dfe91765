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
    /// `task_struct.files` → `files_struct.fdt` → `fdtable.fd` → `file.private_data`
    /// (a `struct socket` for sockets) → `socket.sk`: the path from an fd to its sock.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub file_private_data: u32,
    pub socket_sk: u32,
    /// `sock_common` fields (at the start of `struct sock`).
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    pub skc_num: u32,
    pub skc_family: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 88);

impl KernelOffsets {
    /// All zero: "not resolved" (the placeholder compiled into the eBPF object).
    pub const fn zeroed() -> Self {
        // SAFETY: only u32 fields; all-zero is a valid value.
        unsafe { core::mem::zeroed() }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only u32 fields, no padding (asserted above), every bit pattern valid.
unsafe impl aya::Pod for KernelOffsets {}
// SAFETY: repr(C) integer fields, no padding (asserted in record.rs), any bit pattern valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for crate::FilterConfig {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for crate::FilterRule {}
