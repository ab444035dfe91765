//! Sockets: `connect` (the address the caller passed, read at entry's pointer, and the result
//! at exit) and `accept`/`accept4` (both ends read from the new socket's `sock_common`, so
//! callers passing a NULL address buffer are covered too).
//! Syscall tracepoint layout as in file.rs; checked against Linux 6.1 and 6.18.

use core::mem::size_of;

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_buf, bpf_probe_read_user, bpf_probe_read_user_buf},
    macros::tracepoint,
    programs::TracePointContext,
};
use lineage_common::{builtin_rule, net_op, NetRecord, PendingSyscall, RecordKind};

use crate::{
    emit::{header, observed_task, reserve, submit_flags},
    filter,
    maps::{offsets, PENDING},
    syscalls::nr,
    task::Task,
};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[inline(always)]
fn arg(ctx: &TracePointContext, i: usize) -> u64 {
    // SAFETY: syscall tracepoint arguments are 8-byte slots from offset 16.
    unsafe { ctx.read_at::<u64>(16 + 8 * i) }.unwrap_or(0)
}

#[tracepoint]
pub fn sys_enter_net(ctx: TracePointContext) -> u32 {
    let Some((pid, _)) = observed_task() else {
        return 0;
    };
    // SAFETY: `__syscall_nr` is at offset 8.
    let syscall: i32 = unsafe { ctx.read_at(8) }.unwrap_or(-1);
    let op = match syscall {
        nr::CONNECT => net_op::CONNECT,
        nr::ACCEPT | nr::ACCEPT4 => net_op::ACCEPT,
        _ => return 0,
    };
    let cfg = filter::config();
    if cfg.disabled_ops & (1 << (16 + op)) != 0 {
        filter::count(builtin_rule::OP_DISABLED);
        return 0;
    }
    if !filter::actor_allowed(&cfg) {
        return 0;
    }
    let pending = PendingSyscall {
        syscall_nr: syscall as u32,
        op,
        fd: arg(&ctx, 0) as i32,
        ptr1: arg(&ctx, 1),
        len: arg(&ctx, 2),
        ..Default::default()
    };
    let _ = PENDING.insert(&pid, &pending, 0);
    0
}

#[tracepoint]
pub fn sys_exit_net(ctx: TracePointContext) -> u32 {
    let Some((pid, tgid)) = observed_task() else {
        return 0;
    };
    // SAFETY: copied out before removal.
    let Some(pending) = (unsafe { PENDING.get(&pid) }).copied() else {
        return 0;
    };
    let _ = PENDING.remove(&pid);
    // SAFETY: `ret` is at offset 16.
    let result: i64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    let hdr = header(RecordKind::Net, size_of::<NetRecord>(), pid, tgid);
    let Some(mut entry) = reserve::<NetRecord>(RecordKind::Net) else {
        return 0;
    };
    // SAFETY: all-zero is a valid NetRecord (integers only).
    let rec = entry.write(unsafe { core::mem::zeroed() });
    rec.header = hdr;
    rec.op = pending.op;
    rec.syscall_nr = pending.syscall_nr;
    rec.result = result;
    rec.fd = pending.fd;
    if pending.op == net_op::CONNECT {
        read_sockaddr(rec, pending.ptr1, pending.len);
    } else if result >= 0 {
        read_sock(rec, Task::current().socket_of_fd(result as i32));
    }
    entry.submit(submit_flags());
    0
}

/// The caller's `struct sockaddr` (family first; port and address in network order).
#[inline(always)]
fn read_sockaddr(rec: &mut NetRecord, addr: u64, len: u64) {
    let base = addr as *const u8;
    // SAFETY (the reads below): user memory through the checked helpers.
    let family: u16 = unsafe { bpf_probe_read_user(base as *const u16) }.unwrap_or(0);
    rec.family = family;
    match family {
        AF_INET | AF_INET6 => {
            let port: u16 =
                unsafe { bpf_probe_read_user(base.wrapping_add(2) as *const u16) }.unwrap_or(0);
            rec.remote_port = u16::from_be(port);
            let (at, n) = if family == AF_INET { (4, 4) } else { (8, 16) };
            if unsafe { bpf_probe_read_user_buf(base.wrapping_add(at), &mut rec.addr[..n]) }.is_ok()
            {
                rec.addr_len = n as u16;
            }
        }
        AF_UNIX => {
            // sun_path follows the 2-byte family; `len` bounds what the caller passed.
            let path_len = (len.saturating_sub(2) as usize).min(108);
            if path_len > 0
                && unsafe { bpf_probe_read_user_buf(base.wrapping_add(2), &mut rec.addr) }.is_ok()
            {
                rec.addr_len = path_len as u16;
            }
        }
        _ => {}
    }
}

/// Addresses from the accepted socket's `sock_common`.
#[inline(always)]
fn read_sock(rec: &mut NetRecord, sk: Task) {
    let off = offsets();
    let family: u16 = sk.read(off.skc_family);
    rec.family = family;
    rec.remote_port = u16::from_be(sk.read::<u16>(off.skc_dport));
    rec.local_port = sk.read::<u16>(off.skc_num);
    if family == AF_INET {
        rec.addr[..4].copy_from_slice(&sk.read::<u32>(off.skc_daddr).to_ne_bytes());
        rec.local_addr[..4].copy_from_slice(&sk.read::<u32>(off.skc_rcv_saddr).to_ne_bytes());
        rec.addr_len = 4;
    } else if family == AF_INET6 {
        // SAFETY: kernel memory through the checked helper.
        unsafe {
            let _ = bpf_probe_read_kernel_buf(sk.field_ptr(off.skc_v6_daddr), &mut rec.addr[..16]);
            let _ =
                bpf_probe_read_kernel_buf(sk.field_ptr(off.skc_v6_rcv_saddr), &mut rec.local_addr);
        }
        rec.addr_len = 16;
    }
}
