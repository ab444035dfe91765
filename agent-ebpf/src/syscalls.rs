//! Syscall numbers of the tracked file and socket calls. One entry probe serves several
//! syscalls and tells them apart by `__syscall_nr`, so the numbers are per architecture.
//! Checked against arch/x86/entry/syscalls/syscall_64.tbl (Linux 6.18).

#[cfg(bpf_target_arch = "x86_64")]
pub mod nr {
    pub const OPEN: i32 = 2;
    pub const CONNECT: i32 = 42;
    pub const ACCEPT: i32 = 43;
    pub const RENAME: i32 = 82;
    pub const CREAT: i32 = 85;
    pub const UNLINK: i32 = 87;
    pub const CHMOD: i32 = 90;
    pub const CHOWN: i32 = 92;
    pub const LCHOWN: i32 = 94;
    pub const OPENAT: i32 = 257;
    pub const FCHOWNAT: i32 = 260;
    pub const UNLINKAT: i32 = 263;
    pub const RENAMEAT: i32 = 264;
    pub const FCHMODAT: i32 = 268;
    pub const ACCEPT4: i32 = 288;
    pub const RENAMEAT2: i32 = 316;
    pub const OPENAT2: i32 = 437;
    pub const FCHMODAT2: i32 = 452;
}

// Other architectures: the generic table (include/uapi/asm-generic/unistd.h) has no
// open/creat/unlink/rename/chmod/chown, so those never match.
#[cfg(not(bpf_target_arch = "x86_64"))]
pub mod nr {
    pub const OPEN: i32 = -1;
    pub const CONNECT: i32 = 203;
    pub const ACCEPT: i32 = 202;
    pub const RENAME: i32 = -1;
    pub const CREAT: i32 = -1;
    pub const UNLINK: i32 = -1;
    pub const CHMOD: i32 = -1;
    pub const CHOWN: i32 = -1;
    pub const LCHOWN: i32 = -1;
    pub const OPENAT: i32 = 56;
    pub const FCHOWNAT: i32 = 54;
    pub const UNLINKAT: i32 = 35;
    pub const RENAMEAT: i32 = -1;
    pub const FCHMODAT: i32 = 53;
    pub const ACCEPT4: i32 = 242;
    pub const RENAMEAT2: i32 = 276;
    pub const OPENAT2: i32 = 437;
    pub const FCHMODAT2: i32 = 452;
}
