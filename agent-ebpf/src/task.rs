//! Reading kernel structs (`task_struct` and what hangs off it) through the offsets the agent
//! resolved from BTF.
//!
//! Rust eBPF has no CO-RE field relocations, so each read goes through `bpf_probe_read_kernel` at
//! a load-time offset. A failed read yields zero: a missing field must never stop the record.

use aya_ebpf::helpers::{
    bpf_probe_read_kernel,
    generated::{bpf_get_current_task, bpf_get_current_task_btf, bpf_task_pt_regs},
};

use crate::maps::offsets;

/// A kernel pointer we only ever read through `bpf_probe_read_kernel`.
#[derive(Clone, Copy)]
pub struct Task(*const u8);

impl Task {
    #[inline(always)]
    pub fn current() -> Self {
        // SAFETY: the helper has no preconditions.
        Task(unsafe { bpf_get_current_task() } as *const u8)
    }

    #[inline(always)]
    pub fn from_ptr(ptr: *const u8) -> Self {
        Task(ptr)
    }

    #[inline(always)]
    pub fn null() -> Self {
        Task(core::ptr::null())
    }

    #[inline(always)]
    pub fn is_null(self) -> bool {
        self.0.is_null()
    }

    #[inline(always)]
    pub fn addr(self) -> usize {
        self.0 as usize
    }

    /// The pointer `delta` bytes further (a member's address).
    #[inline(always)]
    pub fn plus(self, delta: u32) -> Task {
        Task(self.0.wrapping_add(delta as usize))
    }

    /// The pointer `delta` bytes before (`container_of`).
    #[inline(always)]
    pub fn minus(self, delta: u32) -> Task {
        Task(self.0.wrapping_sub(delta as usize))
    }

    /// The current task's saved user registers (`struct pt_regs`): at syscall exit they still
    /// hold the syscall's arguments, so no entry probe has to keep them.
    #[inline(always)]
    pub fn current_user_regs() -> Self {
        // SAFETY: the helpers have no preconditions; the result is only read through
        // `bpf_probe_read_kernel`.
        Task(unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const u8)
    }

    /// Syscall argument `i` (0–4) from saved user registers.
    #[inline(always)]
    pub fn syscall_arg(self, i: usize) -> u64 {
        match offsets().regs_arg.get(i) {
            Some(&off) => self.read(off),
            None => 0,
        }
    }

    #[inline(always)]
    pub fn read<T: Default>(self, offset: u32) -> T {
        // Offsets of zero are real (e.g. the first field of sock_common); `valid` says whether
        // the agent resolved them at all.
        if self.0.is_null() || offsets().valid == 0 {
            return T::default();
        }
        // SAFETY: the helper validates the address; a fault returns an error, not a crash.
        unsafe { bpf_probe_read_kernel(self.0.wrapping_add(offset as usize) as *const T) }
            .unwrap_or_default()
    }

    #[inline(always)]
    pub fn read_ptr(self, offset: u32) -> Task {
        Task(self.read::<usize>(offset) as *const u8)
    }

    #[inline(always)]
    pub fn pid(self) -> u32 {
        self.read(offsets().task_pid)
    }

    #[inline(always)]
    pub fn tgid(self) -> u32 {
        self.read(offsets().task_tgid)
    }

    #[inline(always)]
    pub fn start_ns(self) -> u64 {
        self.read(offsets().task_start_boottime)
    }

    /// Start time of the thread-group leader: the process's birth, shared by all its threads.
    #[inline(always)]
    pub fn process_start_ns(self) -> u64 {
        self.read_ptr(offsets().task_group_leader).start_ns()
    }

    #[inline(always)]
    pub fn real_parent(self) -> Task {
        self.read_ptr(offsets().task_real_parent)
    }

    #[inline(always)]
    pub fn exit_code(self) -> u32 {
        self.read(offsets().task_exit_code)
    }

    /// Address of a field, for buffer reads.
    #[inline(always)]
    pub fn field_ptr(self, offset: u32) -> *const u8 {
        self.0.wrapping_add(offset as usize)
    }

    /// The `struct file` behind file descriptor `fd` of this task (null if there is none).
    #[inline(always)]
    pub fn file_of_fd(self, fd: i32) -> Task {
        let off = offsets();
        if fd < 0 {
            return Task::null();
        }
        let fdt = self.read_ptr(off.task_files).read_ptr(off.files_fdt);
        let max: u32 = fdt.read(off.fdtable_max_fds);
        if fd as u32 >= max {
            return Task::null();
        }
        fdt.read_ptr(off.fdtable_fd)
            .read_ptr((fd as u32).wrapping_mul(8))
    }

    /// The `struct sock` behind file descriptor `fd` of this task, if it is a socket.
    #[inline(always)]
    pub fn socket_of_fd(self, fd: i32) -> Task {
        let off = offsets();
        self.file_of_fd(fd)
            .read_ptr(off.file_private_data)
            .read_ptr(off.socket_sk)
    }

    /// Effective uid and gid from the task's credentials.
    #[inline(always)]
    pub fn effective_ids(self) -> (u32, u32) {
        let off = offsets();
        let cred = self.read_ptr(off.task_cred);
        (cred.read(off.cred_euid), cred.read(off.cred_egid))
    }

    /// The task's current directory as a `struct path` address (`fs->pwd`).
    #[inline(always)]
    pub fn cwd(self) -> Task {
        let off = offsets();
        self.read_ptr(off.task_fs).plus(off.fs_pwd)
    }

    /// The executable file of the task's address space (`mm->exe_file`).
    #[inline(always)]
    pub fn exe_file(self) -> Task {
        let off = offsets();
        self.read_ptr(off.task_mm).read_ptr(off.mm_exe_file)
    }
}
