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
    /// `fdtable.max_fds`: an fd is looked up only below it.
    pub fdtable_max_fds: u32,
    /// `file.f_path` (`struct path { mnt, dentry }`) and `file.f_inode`.
    pub file_f_path: u32,
    pub file_f_inode: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    /// `dentry.d_parent`, `dentry.d_name` (`struct qstr { len, name }`) and
    /// `dentry.d_hash.pprev` (NULL once the dentry is unhashed: the file was unlinked).
    pub dentry_d_parent: u32,
    pub dentry_d_name: u32,
    pub dentry_d_hash_pprev: u32,
    pub qstr_len: u32,
    pub qstr_name: u32,
    /// `vfsmount.mnt_root`; `struct mount` embeds the vfsmount at `mount_mnt` and links to its
    /// parent mount and the dentry it is mounted on.
    pub vfsmount_mnt_root: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    /// `inode.i_ino`, `inode.i_sb` → `super_block.s_dev`, `inode.i_size`, and the mtime
    /// (`i_mtime_sec`/`i_mtime_nsec` since Linux 6.7).
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub sb_s_dev: u32,
    pub inode_i_size: u32,
    pub inode_i_mtime_sec: u32,
    pub inode_i_mtime_nsec: u32,
    /// `task_struct.fs` → `fs_struct.pwd` (the cwd, a `struct path`).
    pub task_fs: u32,
    pub fs_pwd: u32,
    /// `task_struct.mm` → `mm_struct.arg_start`/`arg_end`/`exe_file`.
    pub task_mm: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_exe_file: u32,
    /// `task_struct.loginuid`/`sessionid` (audit), `task_struct.signal` → `signal_struct.tty`
    /// → `tty_struct.name`.
    pub task_loginuid: u32,
    pub task_sessionid: u32,
    pub task_signal: u32,
    pub signal_tty: u32,
    pub tty_name: u32,
    /// Saved user registers (`struct pt_regs`) holding syscall arguments 0–4 on x86_64
    /// (`di`, `si`, `dx`, `r10`, `r8`), read at syscall exit instead of keeping them from entry.
    pub regs_arg: [u32; 5],
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 88 + 4 * 36);

impl KernelOffsets {
    /// All zero: "not resolved" (the placeholder compiled into the eBPF object).
    pub const fn zeroed() -> Self {
        // SAFETY: only u32 fields; all-zero is a valid value.
        unsafe { core::mem::zeroed() }
    }
}

/// Offsets for the compat, credential and io_uring probes, resolved from BTF like
/// [`KernelOffsets`]. Kept apart from them so a kernel without, say, io_uring's structs loses
/// only the io_uring decoding (`io_uring_valid` = 0), not the process tree.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureOffsets {
    /// Non-zero once the task, regs and cred fields below are filled.
    pub valid: u32,
    /// `task_struct.thread_info.status` (x86: `TS_COMPAT` while a 32-bit syscall runs).
    pub ti_status: u32,
    /// `pt_regs` fields holding i386 syscall arguments 1–6: bx, cx, dx, si, di, bp.
    pub regs_bx: u32,
    pub regs_cx: u32,
    pub regs_dx: u32,
    pub regs_si: u32,
    pub regs_di: u32,
    pub regs_bp: u32,
    /// `pt_regs.orig_ax`: the syscall number, still there at syscall exit.
    pub regs_orig_ax: u32,
    /// `task_struct.comm`.
    pub task_comm: u32,
    /// Bit offset of the `task_struct.in_execve` bitfield: exec renames the task itself, which
    /// the exec event already says.
    pub task_in_execve_bit: u32,
    /// `cred` ids in [`crate::Ids`] order, then `cap_effective`.
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_suid: u32,
    pub cred_sgid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub cred_fsuid: u32,
    pub cred_fsgid: u32,
    pub cred_cap_effective: u32,
    /// `file.f_inode`, `inode.i_ino`: a socket's inode number names it for the peer table.
    pub file_inode: u32,
    pub inode_ino: u32,
    /// Non-zero once every io_uring field below is filled.
    pub io_uring_valid: u32,
    /// `io_kiocb.async_data` and `io_kiocb.cqe.fd` (the sqe's fd).
    pub kiocb_async_data: u32,
    pub kiocb_fd: u32,
    /// `struct filename.name`: the kernel's copy of a path.
    pub filename_name: u32,
    /// `io_open`: dfd, filename, how.flags, how.mode.
    pub open_dfd: u32,
    pub open_filename: u32,
    pub open_how: u32,
    /// `io_rename` (also `io_link`, used by linkat and symlinkat).
    pub rename_old_dfd: u32,
    pub rename_new_dfd: u32,
    pub rename_oldpath: u32,
    pub rename_newpath: u32,
    pub rename_flags: u32,
    pub link_old_dfd: u32,
    pub link_new_dfd: u32,
    pub link_oldpath: u32,
    pub link_newpath: u32,
    pub link_flags: u32,
    /// `io_unlink`: dfd, flags, filename.
    pub unlink_dfd: u32,
    pub unlink_flags: u32,
    pub unlink_filename: u32,
    /// `io_mkdir`: dfd, mode, filename.
    pub mkdir_dfd: u32,
    pub mkdir_mode: u32,
    pub mkdir_filename: u32,
    /// `io_async_msghdr.addr` (the kernel's copy of a sockaddr) and `.msg.msg_name` (set when a
    /// send names a destination).
    pub msg_addr: u32,
    pub msg_name: u32,
    /// `io_xattr.filename` and `io_xattr.ctx.kname` (the attribute name, kernel copy).
    pub xattr_filename: u32,
    pub xattr_kname: u32,
    /// `io_ftrunc.len`, `io_listen.backlog`.
    pub ftrunc_len: u32,
    pub listen_backlog: u32,
}

const _: () = assert!(core::mem::size_of::<CaptureOffsets>() == 4 * 51);

impl CaptureOffsets {
    pub const fn zeroed() -> Self {
        // SAFETY: only u32 fields; all-zero is a valid value.
        unsafe { core::mem::zeroed() }
    }
}

/// Field offsets in the io_uring tracepoints' records, read from tracefs `format` files at load
/// time (the layouts changed across kernel versions). A zero `valid` disables the io_uring probes'
/// reads; an offset of `u32::MAX` names a field this kernel's format lacks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoUringTpFields {
    pub valid: u32,
    /// `io_uring_submit_req`: ctx, req, user_data, opcode (u8), flags (u64), sq_thread (bool).
    pub submit_ctx: u32,
    pub submit_req: u32,
    pub submit_user_data: u32,
    pub submit_opcode: u32,
    pub submit_flags: u32,
    pub submit_sq_thread: u32,
    /// `io_uring_complete`: ctx, req, user_data, res (int), cflags.
    pub complete_ctx: u32,
    pub complete_req: u32,
    pub complete_user_data: u32,
    pub complete_res: u32,
    pub complete_cflags: u32,
    /// `io_uring_req_failed`: ctx, req, user_data, opcode, error.
    pub failed_ctx: u32,
    pub failed_req: u32,
    pub failed_user_data: u32,
    pub failed_opcode: u32,
    pub failed_error: u32,
    /// `io_uring_create`: fd, ctx, sq_entries, cq_entries, flags.
    pub create_fd: u32,
    pub create_ctx: u32,
    pub create_sq_entries: u32,
    pub create_cq_entries: u32,
    pub create_flags: u32,
    /// `io_uring_register`: ctx, opcode, nr_files, nr_bufs, ret (long).
    pub register_ctx: u32,
    pub register_opcode: u32,
    pub register_nr_files: u32,
    pub register_nr_bufs: u32,
    pub register_ret: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<IoUringTpFields>() == 4 * 28);

impl IoUringTpFields {
    pub const fn zeroed() -> Self {
        // SAFETY: only u32 fields; all-zero is a valid value.
        unsafe { core::mem::zeroed() }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), only u32 fields, no padding (asserted above), every bit pattern valid.
unsafe impl aya::Pod for IoUringTpFields {}
#[cfg(feature = "user")]
// SAFETY: repr(C), only u32 fields, no padding (asserted above), every bit pattern valid.
unsafe impl aya::Pod for KernelOffsets {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for CaptureOffsets {}
// SAFETY: repr(C) integer fields, no padding (asserted in record.rs), any bit pattern valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for crate::FilterConfig {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for crate::FilterRule {}
