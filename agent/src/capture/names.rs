//! Names for the numbers the kernel records carry: syscalls (x86_64 and i386 tables) and
//! io_uring opcodes. Only the calls the probes record are named; others read `unknown`.

use lineage_common::SYSCALL_COMPAT;

/// (number, name) in arch/x86/entry/syscalls/syscall_64.tbl.
#[rustfmt::skip]
const NATIVE: &[(u32, &str)] = &[
    (2, "open"), (42, "connect"), (43, "accept"), (44, "sendto"), (46, "sendmsg"),
    (49, "bind"), (50, "listen"), (76, "truncate"), (77, "ftruncate"), (82, "rename"),
    (83, "mkdir"), (84, "rmdir"), (85, "creat"), (86, "link"), (87, "unlink"), (88, "symlink"),
    (90, "chmod"), (91, "fchmod"), (92, "chown"), (93, "fchown"), (94, "lchown"),
    (101, "ptrace"), (105, "setuid"), (106, "setgid"), (113, "setreuid"), (114, "setregid"),
    (116, "setgroups"), (117, "setresuid"), (119, "setresgid"), (122, "setfsuid"),
    (123, "setfsgid"), (126, "capset"), (132, "utime"), (133, "mknod"), (155, "pivot_root"),
    (165, "mount"), (166, "umount2"), (175, "init_module"), (176, "delete_module"),
    (188, "setxattr"), (189, "lsetxattr"), (190, "fsetxattr"), (197, "removexattr"),
    (198, "lremovexattr"), (199, "fremovexattr"), (235, "utimes"), (257, "openat"),
    (258, "mkdirat"), (259, "mknodat"), (260, "fchownat"), (261, "futimesat"),
    (263, "unlinkat"), (264, "renameat"), (265, "linkat"), (266, "symlinkat"),
    (268, "fchmodat"), (272, "unshare"), (280, "utimensat"), (288, "accept4"), (308, "setns"),
    (313, "finit_module"), (316, "renameat2"), (319, "memfd_create"), (321, "bpf"),
    (437, "openat2"), (452, "fchmodat2"), (463, "setxattrat"), (466, "removexattrat"),
];

/// (number, name) in arch/x86/entry/syscalls/syscall_32.tbl.
#[rustfmt::skip]
const I386: &[(u32, &str)] = &[
    (5, "open"), (8, "creat"), (9, "link"), (10, "unlink"), (11, "execve"), (14, "mknod"),
    (15, "chmod"), (16, "lchown16"), (21, "mount"), (22, "umount"), (23, "setuid16"),
    (26, "ptrace"), (30, "utime"), (37, "kill"), (38, "rename"), (39, "mkdir"), (40, "rmdir"),
    (46, "setgid16"), (51, "acct"), (52, "umount2"), (61, "chroot"), (70, "setreuid16"),
    (71, "setregid16"), (74, "sethostname"), (81, "setgroups16"), (83, "symlink"),
    (87, "swapon"), (88, "reboot"), (92, "truncate"), (93, "ftruncate"), (94, "fchmod"),
    (95, "fchown16"), (101, "ioperm"), (102, "socketcall"), (110, "iopl"),
    (121, "setdomainname"), (128, "init_module"), (129, "delete_module"),
    (136, "personality"), (138, "setfsuid16"), (139, "setfsgid16"), (164, "setresuid16"),
    (170, "setresgid16"), (172, "prctl"), (182, "chown16"), (185, "capset"),
    (193, "truncate64"), (194, "ftruncate64"), (198, "lchown"), (203, "setreuid"),
    (204, "setregid"), (206, "setgroups"), (207, "fchown"), (208, "setresuid"),
    (210, "setresgid"), (212, "chown"), (213, "setuid"), (214, "setgid"), (215, "setfsuid"),
    (216, "setfsgid"), (217, "pivot_root"), (226, "setxattr"), (227, "lsetxattr"),
    (228, "fsetxattr"), (235, "removexattr"), (236, "lremovexattr"), (237, "fremovexattr"),
    (271, "utimes"), (283, "kexec_load"), (295, "openat"), (296, "mkdirat"), (297, "mknodat"),
    (298, "fchownat"), (299, "futimesat"), (301, "unlinkat"), (302, "renameat"),
    (303, "linkat"), (304, "symlinkat"), (306, "fchmodat"), (310, "unshare"),
    (320, "utimensat"), (336, "perf_event_open"), (342, "open_by_handle_at"), (346, "setns"),
    (348, "process_vm_writev"), (350, "finit_module"), (353, "renameat2"), (354, "seccomp"),
    (356, "memfd_create"), (357, "bpf"), (358, "execveat"), (361, "bind"), (362, "connect"),
    (363, "listen"), (364, "accept4"), (369, "sendto"), (370, "sendmsg"),
    (374, "userfaultfd"), (412, "utimensat_time64"), (425, "io_uring_setup"),
    (428, "open_tree"), (429, "move_mount"), (430, "fsopen"), (432, "fsmount"),
    (437, "openat2"), (438, "pidfd_getfd"), (442, "mount_setattr"), (452, "fchmodat2"),
    (463, "setxattrat"), (466, "removexattrat"),
];

/// A record's syscall number (with [`SYSCALL_COMPAT`] for i386) → (name, compat, bare number).
pub fn syscall(raw: u32) -> (&'static str, bool, u32) {
    let compat = raw & SYSCALL_COMPAT != 0;
    let nr = raw & !SYSCALL_COMPAT;
    let table = if compat { I386 } else { NATIVE };
    let name = table
        .iter()
        .find(|(n, _)| *n == nr)
        .map_or("unknown", |(_, name)| name);
    (name, compat, nr)
}

/// `IORING_OP_*` names, indexed by opcode (include/uapi/linux/io_uring.h, Linux 6.18).
#[rustfmt::skip]
const IO_URING_OPS: &[&str] = &[
    "nop", "readv", "writev", "fsync", "read_fixed", "write_fixed", "poll_add", "poll_remove",
    "sync_file_range", "sendmsg", "recvmsg", "timeout", "timeout_remove", "accept",
    "async_cancel", "link_timeout", "connect", "fallocate", "openat", "close", "files_update",
    "statx", "read", "write", "fadvise", "madvise", "send", "recv", "openat2", "epoll_ctl",
    "splice", "provide_buffers", "remove_buffers", "tee", "shutdown", "renameat", "unlinkat",
    "mkdirat", "symlinkat", "linkat", "msg_ring", "fsetxattr", "setxattr", "fgetxattr",
    "getxattr", "socket", "uring_cmd", "send_zc", "sendmsg_zc", "read_multishot", "waitid",
    "futex_wait", "futex_wake", "futex_waitv", "fixed_fd_install", "ftruncate", "bind",
    "listen",
];

pub fn io_uring_opcode(op: u32) -> &'static str {
    IO_URING_OPS.get(op as usize).copied().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_by_table() {
        assert_eq!(syscall(257), ("openat", false, 257));
        assert_eq!(syscall(5 | SYSCALL_COMPAT), ("open", true, 5));
        assert_eq!(syscall(362 | SYSCALL_COMPAT).0, "connect");
        assert_eq!(syscall(9999).0, "unknown");
        assert_eq!(io_uring_opcode(18), "openat");
        assert_eq!(io_uring_opcode(16), "connect");
        assert_eq!(io_uring_opcode(57), "listen");
        assert_eq!(io_uring_opcode(200), "unknown");
    }
}
