//! Security-syscall, signal and comm-change records → events.

use lineage_common::{sys_op, CommChangeRecord, SignalRecord, SyscallRecord};

use crate::capture::{decode::c_str, event::Detail, fileops, names};

fn op_name(op: u32) -> &'static str {
    match op {
        sys_op::CREDS => "creds",
        sys_op::CAPSET => "capset",
        sys_op::PTRACE => "ptrace",
        sys_op::MODULE_LOAD => "module_load",
        sys_op::MODULE_UNLOAD => "module_unload",
        sys_op::BPF => "bpf",
        sys_op::MOUNT => "mount",
        sys_op::UMOUNT => "umount",
        sys_op::PIVOT_ROOT => "pivot_root",
        sys_op::UNSHARE => "unshare",
        sys_op::SETNS => "setns",
        sys_op::MEMFD => "memfd_create",
        sys_op::COMPAT_OTHER => "compat_other",
        _ => "unknown",
    }
}

fn text(bytes: &[u8], len: u32) -> Option<String> {
    let len = (len as usize).min(bytes.len());
    (len > 0).then(|| String::from_utf8_lossy(&bytes[..len]).into_owned())
}

pub fn syscall_detail(r: &SyscallRecord) -> Detail {
    let (syscall, compat, nr) = names::syscall(r.syscall_nr);
    let creds = matches!(r.op, sys_op::CREDS | sys_op::CAPSET);
    let (errno, error) = fileops::errno_of(r.result);
    Detail::Syscall {
        op: op_name(r.op),
        syscall,
        nr,
        compat,
        args: r.args.to_vec(),
        result: r.result,
        errno,
        error,
        old_ids: creds.then_some(r.old_ids),
        new_ids: creds.then_some(r.new_ids),
        old_caps: creds.then_some(r.old_caps),
        new_caps: creds.then_some(r.new_caps),
        name: text(&r.str1, r.str1_len),
        target: text(&r.str2, r.str2_len),
    }
}

pub fn signal_detail(r: &SignalRecord) -> Detail {
    Detail::SignalToAgent {
        signal: r.sig,
        si_code: r.code,
        target_pid: r.target_pid,
        result: r.result,
    }
}

pub fn comm_detail(r: &CommChangeRecord) -> Detail {
    Detail::CommChange {
        target_pid: r.target_pid,
        old_comm: c_str(&r.old_comm),
        new_comm: c_str(&r.new_comm),
    }
}
