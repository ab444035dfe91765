//! Sockets: `connect` and `bind` (the address the caller passed, read at exit from the entry's
//! pointer, with the result), `accept`/`accept4` (both ends read from the new socket's
//! `sock_common`, so callers passing a NULL address buffer are covered too), `listen` (the bound
//! address read from the socket) and `sendto`/`sendmsg` with an explicit destination: recorded
//! once per (socket, peer) through the `SEND_PEERS` LRU, not per datagram.
//! Syscall tracepoint layout as in file.rs; checked against Linux 6.1 and 6.18.

use core::mem::size_of;

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_buf, bpf_probe_read_user, bpf_probe_read_user_buf},
    macros::tracepoint,
    programs::TracePointContext,
};
use lineage_common::{builtin_rule, net_op, NetRecord, PendingSyscall, RecordKind};

use crate::{
    cap_off,
    emit::{header, observed_task, reserve, submit_flags},
    filter,
    maps::{offsets, PeerKey, PEER_INSERTS, PENDING, SEND_PEERS},
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

/// Decodes a socket call (argument `i` from `a(i)`) into a pending op. `msghdr`: a `sendmsg`
/// (the destination is inside `struct msghdr`); `compat`: that struct is the 32-bit layout.
#[inline(always)]
pub fn net_args(
    op: u32,
    recorded_nr: u32,
    a: impl Fn(usize) -> u64,
    msghdr: bool,
    compat: bool,
) -> Option<PendingSyscall> {
    let mut p = PendingSyscall {
        syscall_nr: recorded_nr,
        kind: RecordKind::Net as u32,
        op,
        fd: a(0) as i32,
        ptr1: a(1),
        len: a(2),
        ..Default::default()
    };
    match op {
        net_op::LISTEN => (p.ptr1, p.len) = (0, a(1)),
        net_op::SEND if msghdr => {
            // struct msghdr: msg_name then msg_namelen (pointer-sized slot first).
            let msg = a(1) as *const u8;
            // SAFETY (both reads): user memory through the checked helper.
            let (name, len) = if compat {
                let name: u32 = unsafe { bpf_probe_read_user(msg as *const u32) }.unwrap_or(0);
                let len: u32 =
                    unsafe { bpf_probe_read_user(msg.wrapping_add(4) as *const u32) }.unwrap_or(0);
                (name as u64, len as u64)
            } else {
                let name: u64 = unsafe { bpf_probe_read_user(msg as *const u64) }.unwrap_or(0);
                let len: u32 =
                    unsafe { bpf_probe_read_user(msg.wrapping_add(8) as *const u32) }.unwrap_or(0);
                (name, len as u64)
            };
            (p.ptr1, p.len) = (name, len);
        }
        // sendto(fd, buf, len, flags, dest_addr, addrlen)
        net_op::SEND => (p.ptr1, p.len) = (a(4), a(5)),
        _ => {}
    }
    // A send without a destination goes to the connected peer, recorded at connect.
    if op == net_op::SEND && p.ptr1 == 0 {
        return None;
    }
    Some(p)
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
        nr::BIND => net_op::BIND,
        nr::LISTEN => net_op::LISTEN,
        nr::SENDTO | nr::SENDMSG => net_op::SEND,
        _ => return 0,
    };
    let msghdr = syscall == nr::SENDMSG;
    if let Some(pending) = net_args(op, syscall as u32, |i| arg(&ctx, i), msghdr, false) {
        enter(pid, &pending);
    }
    0
}

/// Applies the op and actor filters and keeps the call for the exit probe.
#[inline(always)]
pub fn enter(pid: u32, pending: &PendingSyscall) {
    let cfg = filter::config();
    if cfg.disabled_ops & (1 << (16 + pending.op)) != 0 {
        filter::count(builtin_rule::OP_DISABLED);
        return;
    }
    if !filter::actor_allowed(&cfg) {
        return;
    }
    let _ = PENDING.insert(&pid, pending, 0);
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
    exit(pid, tgid, &pending, result);
    0
}

/// Emits the record of a finished socket call (sends only for a peer new to the socket).
#[inline(always)]
pub fn exit(pid: u32, tgid: u32, pending: &PendingSyscall, result: i64) {
    if pending.op == net_op::SEND && !new_peer(pending) {
        return;
    }
    let hdr = header(RecordKind::Net, size_of::<NetRecord>(), pid, tgid);
    let Some(mut entry) = reserve::<NetRecord>(RecordKind::Net) else {
        return;
    };
    // SAFETY: all-zero is a valid NetRecord (integers only).
    let rec = entry.write(unsafe { core::mem::zeroed() });
    rec.header = hdr;
    rec.op = pending.op;
    rec.syscall_nr = pending.syscall_nr;
    rec.result = result;
    rec.fd = pending.fd;
    match pending.op {
        net_op::CONNECT | net_op::BIND | net_op::SEND => {
            read_sockaddr(rec, pending.ptr1, pending.len)
        }
        net_op::LISTEN => {
            read_sock(rec, Task::current().socket_of_fd(pending.fd));
            rec.remote_port = pending.len.min(u16::MAX as u64) as u16;
        }
        _ if result >= 0 => read_sock(rec, Task::current().socket_of_fd(result as i32)),
        _ => {}
    }
    entry.submit(submit_flags());
}

/// Whether this socket has not sent to this destination before (and remembers it now).
#[inline(always)]
fn new_peer(pending: &PendingSyscall) -> bool {
    let base = pending.ptr1 as *const u8;
    // SAFETY (reads): user memory through the checked helpers.
    let family: u16 = unsafe { bpf_probe_read_user(base as *const u16) }.unwrap_or(0);
    let mut key = PeerKey {
        ino: 0,
        family,
        port: unsafe { bpf_probe_read_user(base.wrapping_add(2) as *const u16) }.unwrap_or(0),
        _pad: 0,
        addr: [0; 16],
    };
    let (at, n) = if family == AF_INET6 { (8, 16) } else { (4, 4) };
    let _ = unsafe { bpf_probe_read_user_buf(base.wrapping_add(at), &mut key.addr[..n]) };
    let file = Task::current().file_of_fd(pending.fd);
    key.ino = file
        .read_ptr(cap_off!(file_inode))
        .read::<u64>(cap_off!(inode_ino));
    // SAFETY: a presence check only.
    if unsafe { SEND_PEERS.get(&key) }.is_some() {
        return false;
    }
    let _ = SEND_PEERS.insert(&key, &1, 0);
    if let Some(slot) = PEER_INSERTS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe { *slot += 1 };
    }
    true
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
