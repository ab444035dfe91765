//! Enforcement: deny what cannot be recorded, and what a deny rule names.
//!
//! - `enforce_exec` (second program on `sched/sched_process_exec`, after the capture one): the
//!   new image is mapped but has not run an instruction; `bpf_send_signal(SIGKILL)` kills it
//!   before it returns to user space.
//! - `enforce_connect4/6` (`cgroup/connect4`, `cgroup/connect6` on the cgroup v2 root):
//!   returning 0 refuses the connect with EPERM.
//! - [`exec_unrecorded`] is called from the capture exec probe when its record cannot be
//!   reserved: in enforce mode that exec is killed too (fail closed).
//!
//! Every decision is written to its own ring buffer (`DECISIONS`), so a full capture ring does
//! not hide it; a decision whose record cannot be written is still counted per reason.
//! Checked against Linux 6.18.

use core::mem::size_of;

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns,
            bpf_probe_read_kernel_str, bpf_send_signal,
        },
    },
    macros::{cgroup_sock_addr, map, tracepoint},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    programs::{SockAddrContext, TracePointContext},
    EbpfContext,
};
use lineage_common::{
    deny_reason, enforce_mode, enforce_target, EnforceConfig, EnforceRecord, NetRecord,
    ENFORCE_SLOTS, NET4_KEY_LEN, NET6_KEY_LEN, PATH_CAP, RECORD_LOST_BASE,
};

use crate::maps::{agent_tgid, EVENTS};

const SIGKILL: u32 = 9;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// Deepest cgroup ancestry level checked for scope and allowlist membership.
const MAX_CGROUP_DEPTH: i32 = 16;
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_RING_SIZE: u64 = 1;

#[map]
pub static ENFORCE_CONFIG: Array<EnforceConfig> = Array::with_max_entries(1, 0);

/// Slot 0: `bpf_ktime_get_boot_ns` time of the agent's last healthy pipeline check.
#[map]
pub static HEARTBEAT: Array<u64> = Array::with_max_entries(1, 0);

/// With `EnforceConfig::scoped`, only tasks under one of these cgroups (v2 ids) are subject.
#[map]
pub static ENFORCE_SCOPE: HashMap<u64, u32> = HashMap::with_max_entries(64, 0);

/// Exempt from liveness and fail-closed denials: tasks under these cgroups, these uids, and
/// images whose filename starts with one of these prefixes (their tgids go to ALLOWED_TGIDS).
#[map]
pub static ALLOW_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(64, 0);
#[map]
pub static ALLOW_UIDS: HashMap<u32, u32> = HashMap::with_max_entries(64, 0);
#[map]
pub static ALLOW_PATHS: LpmTrie<[u8; PATH_CAP], u32> = LpmTrie::with_max_entries(64, 0);
#[map]
pub static ALLOWED_TGIDS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(8192, 0);

/// Deny rules: key → rule id.
#[map]
pub static DENY_EXEC_PATHS: LpmTrie<[u8; PATH_CAP], u32> = LpmTrie::with_max_entries(256, 0);
#[map]
pub static DENY_EXEC_UIDS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);
#[map]
pub static DENY_EXEC_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(256, 0);
#[map]
pub static DENY_NET4: LpmTrie<[u8; NET4_KEY_LEN], u32> = LpmTrie::with_max_entries(256, 0);
#[map]
pub static DENY_NET6: LpmTrie<[u8; NET6_KEY_LEN], u32> = LpmTrie::with_max_entries(256, 0);

/// Per-CPU decisions by reason; `RECORD_LOST_BASE + reason`: decisions not written to DECISIONS.
#[map]
pub static DECIDED: PerCpuArray<u64> = PerCpuArray::with_max_entries(ENFORCE_SLOTS, 0);

#[map]
pub static DECISIONS: RingBuf = RingBuf::with_byte_size(1 << 18, 0);

#[map]
pub static ENFORCE_SCRATCH: PerCpuArray<EnforceRecord> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn config() -> EnforceConfig {
    ENFORCE_CONFIG.get(0).copied().unwrap_or_default()
}

#[inline(always)]
fn count(slot: u32) {
    if let Some(p) = DECIDED.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot.
        unsafe { *p += 1 };
    }
}

/// Whether the current task's cgroup or one of its ancestors is in `map`.
#[inline(always)]
fn under(map: &HashMap<u64, u32>, cgroup: u64) -> bool {
    // SAFETY: lookups only; the value is not kept.
    if unsafe { map.get(&cgroup) }.is_some() {
        return true;
    }
    let mut level = 0;
    while level < MAX_CGROUP_DEPTH {
        // SAFETY: no preconditions; 0 past the task's own level.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
        if id == 0 {
            break;
        }
        if unsafe { map.get(&id) }.is_some() {
            return true;
        }
        level += 1;
    }
    false
}

/// The task the decision is about, unless it is never subject (the agent, PID 1, out of scope).
#[inline(always)]
fn subject(cfg: &EnforceConfig) -> Option<(u32, u32, u64)> {
    if cfg.mode == enforce_mode::OBSERVE {
        return None;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == agent_tgid() || tgid == 1 {
        return None;
    }
    // SAFETY: no preconditions.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    if cfg.scoped != 0 && !under(&ENFORCE_SCOPE, cgroup) {
        return None;
    }
    Some((pid_tgid as u32, tgid, cgroup))
}

#[inline(always)]
fn allowlisted(uid: u32, cgroup: u64, tgid: u32) -> bool {
    // SAFETY: lookups only.
    let listed = unsafe { ALLOW_UIDS.get(&uid).is_some() || ALLOWED_TGIDS.get(&tgid).is_some() };
    listed || under(&ALLOW_CGROUPS, cgroup)
}

/// The heartbeat's age, and whether it is past the deadline (never written = stale).
#[inline(always)]
fn heartbeat(cfg: &EnforceConfig, now: u64) -> (u64, bool) {
    let beat = HEARTBEAT.get(0).copied().unwrap_or(0);
    let age = now.saturating_sub(beat);
    (age, beat == 0 || age > cfg.deadline_ns)
}

/// Fills the per-CPU scratch record with the acting task; `None` if there is no scratch.
#[inline(always)]
fn start_record(
    cfg: &EnforceConfig,
    target: u32,
    (pid, tgid, cgroup): (u32, u32, u64),
) -> Option<*mut EnforceRecord> {
    let rec = ENFORCE_SCRATCH.get_ptr_mut(0)?;
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: this CPU's scratch slot; every field is written before use.
    unsafe {
        (*rec).ktime_ns = bpf_ktime_get_boot_ns();
        (*rec).cgroup_id = cgroup;
        (*rec).pid = pid;
        (*rec).tgid = tgid;
        (*rec).uid = uid_gid as u32;
        (*rec).gid = (uid_gid >> 32) as u32;
        (*rec).target = target;
        (*rec).reason = 0;
        (*rec).rule_id = 0;
        (*rec).mode = cfg.mode;
        (*rec).heartbeat_age_ns = 0;
        (*rec).family = 0;
        (*rec).port = 0;
        (*rec).addr_len = 0;
        (*rec).addr = [0; 16];
        (*rec).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*rec).filename_len = 0;
        (*rec).prefix_bits = 0;
        (*rec).filename[0] = 0;
    }
    Some(rec)
}

/// Counts and records one decision; true if the action must be stopped (enforce mode).
#[inline(always)]
fn decide(rec: *mut EnforceRecord, reason: u32, rule_id: u32, age: u64) -> bool {
    count(reason);
    // SAFETY: `rec` is this CPU's scratch slot, fully initialised by `start_record`.
    unsafe {
        (*rec).reason = reason;
        (*rec).rule_id = rule_id;
        (*rec).heartbeat_age_ns = age;
        let bytes = core::slice::from_raw_parts(rec as *const u8, size_of::<EnforceRecord>());
        if DECISIONS.output::<[u8]>(bytes, 0).is_err() {
            count(RECORD_LOST_BASE + reason);
        }
        (*rec).mode == enforce_mode::ENFORCE
    }
}

/// Copies `sched_process_exec`'s filename into the record and returns the LPM key over it.
#[inline(always)]
fn exec_filename(ctx: &TracePointContext, rec: *mut EnforceRecord) -> *const Key<[u8; PATH_CAP]> {
    // SAFETY: `__data_loc filename` is at offset 8 of the tracepoint format; the string is read
    // with the checked helper into the scratch record.
    unsafe {
        let data_loc: u32 = ctx.read_at(8).unwrap_or(0);
        let src = (ctx.as_ptr() as *const u8).wrapping_add((data_loc & 0xffff) as usize);
        let n = bpf_probe_read_kernel_str(
            (*rec).filename.as_mut_ptr().cast(),
            PATH_CAP as u32,
            src.cast(),
        );
        let len = if n > 0 {
            (n as u32 - 1) & (PATH_CAP as u32 - 1)
        } else {
            0
        };
        (*rec).filename_len = len;
        (*rec).prefix_bits = len * 8;
        &raw const (*rec).prefix_bits as *const Key<[u8; PATH_CAP]>
    }
}

#[inline(always)]
fn kill_current() {
    // SAFETY: signals the current task's process; allowed from tracepoints.
    unsafe { bpf_send_signal(SIGKILL) };
}

/// `sched/sched_process_exec`: deny rules, then the liveness deadline.
#[tracepoint]
pub fn enforce_exec(ctx: TracePointContext) -> u32 {
    let cfg = config();
    let Some(who) = subject(&cfg) else {
        return 0;
    };
    let Some(rec) = start_record(&cfg, enforce_target::EXEC, who) else {
        return 0;
    };
    let key = exec_filename(&ctx, rec);
    let (_, tgid, cgroup) = who;
    // SAFETY: `rec` was initialised above; map values are copied out.
    let uid = unsafe { (*rec).uid };
    let rule = unsafe {
        DENY_EXEC_PATHS
            .get(&*key)
            .or_else(|| DENY_EXEC_UIDS.get(&uid))
            .or_else(|| DENY_EXEC_CGROUPS.get(&cgroup))
            .copied()
    };
    // SAFETY: the boot clock helper has no preconditions.
    let (age, stale) = heartbeat(&cfg, unsafe { bpf_ktime_get_boot_ns() });
    if let Some(rule_id) = rule {
        if decide(rec, deny_reason::RULE, rule_id, age) {
            kill_current();
        }
        return 0;
    }
    // The new image replaces whatever made this tgid allowlisted before.
    // SAFETY: lookup only.
    if unsafe { ALLOW_PATHS.get(&*key) }.is_some() {
        let _ = ALLOWED_TGIDS.insert(&tgid, &1, 0);
        return 0;
    }
    let _ = ALLOWED_TGIDS.remove(&tgid);
    if stale && !allowlisted(uid, cgroup, tgid) && decide(rec, deny_reason::HEARTBEAT, 0, age) {
        kill_current();
    }
    0
}

/// Called by the capture exec probe when its record could not be reserved: in enforce mode
/// the image is killed before it runs, unless the task is allowlisted.
#[inline(always)]
pub fn exec_unrecorded(ctx: &TracePointContext) {
    let cfg = config();
    let Some(who) = subject(&cfg) else {
        return;
    };
    let Some(rec) = start_record(&cfg, enforce_target::EXEC, who) else {
        return;
    };
    let key = exec_filename(ctx, rec);
    let (_, tgid, cgroup) = who;
    // SAFETY: initialised above; lookups only.
    let uid = unsafe { (*rec).uid };
    if unsafe { ALLOW_PATHS.get(&*key) }.is_some() || allowlisted(uid, cgroup, tgid) {
        return;
    }
    // SAFETY: no preconditions.
    let (age, _) = heartbeat(&cfg, unsafe { bpf_ktime_get_boot_ns() });
    if decide(rec, deny_reason::UNRECORDED, 0, age) {
        kill_current();
    }
}

/// `cgroup/connect4`: 1 lets the connect proceed, 0 refuses it with EPERM.
#[cgroup_sock_addr(connect4)]
pub fn enforce_connect4(ctx: SockAddrContext) -> i32 {
    connect_verdict(&ctx, AF_INET)
}

/// `cgroup/connect6`.
#[cgroup_sock_addr(connect6)]
pub fn enforce_connect6(ctx: SockAddrContext) -> i32 {
    connect_verdict(&ctx, AF_INET6)
}

/// The deny rule for this destination: the exact port first, then the any-port rules.
#[inline(always)]
fn net_rule(family: u16, port_be: u16, addr: &[u8; 16]) -> Option<u32> {
    let port = port_be.to_ne_bytes();
    if family == AF_INET {
        let mut data = [0u8; NET4_KEY_LEN];
        data[0] = port[0];
        data[1] = port[1];
        data[2..6].copy_from_slice(&addr[..4]);
        let exact = Key::new(16 + 32, data);
        data[0] = 0;
        data[1] = 0;
        let any = Key::new(16 + 32, data);
        DENY_NET4
            .get(&exact)
            .or_else(|| DENY_NET4.get(&any))
            .copied()
    } else {
        let mut data = [0u8; NET6_KEY_LEN];
        data[0] = port[0];
        data[1] = port[1];
        data[2..18].copy_from_slice(addr);
        let exact = Key::new(16 + 128, data);
        data[0] = 0;
        data[1] = 0;
        let any = Key::new(16 + 128, data);
        DENY_NET6
            .get(&exact)
            .or_else(|| DENY_NET6.get(&any))
            .copied()
    }
}

#[inline(always)]
fn connect_verdict(ctx: &SockAddrContext, family: u16) -> i32 {
    const ALLOW: i32 = 1;
    const DENY: i32 = 0;
    let cfg = config();
    let Some(who) = subject(&cfg) else {
        return ALLOW;
    };
    let Some(rec) = start_record(&cfg, enforce_target::CONNECT, who) else {
        return ALLOW;
    };
    let (_, tgid, cgroup) = who;
    let sa = ctx.sock_addr;
    // SAFETY: the context fields are read with the 4-byte loads the verifier allows; `rec` is
    // this CPU's scratch slot.
    let (uid, port_be, addr) = unsafe {
        let mut addr = [0u8; 16];
        if family == AF_INET {
            addr[..4].copy_from_slice(&(*sa).user_ip4.to_ne_bytes());
            (*rec).addr_len = 4;
        } else {
            let ip6 = (*sa).user_ip6;
            addr[..4].copy_from_slice(&ip6[0].to_ne_bytes());
            addr[4..8].copy_from_slice(&ip6[1].to_ne_bytes());
            addr[8..12].copy_from_slice(&ip6[2].to_ne_bytes());
            addr[12..].copy_from_slice(&ip6[3].to_ne_bytes());
            (*rec).addr_len = 16;
        }
        let port_be = (*sa).user_port as u16;
        (*rec).family = family;
        (*rec).port = u16::from_be(port_be);
        (*rec).addr = addr;
        ((*rec).uid, port_be, addr)
    };
    // SAFETY: no preconditions.
    let (age, stale) = heartbeat(&cfg, unsafe { bpf_ktime_get_boot_ns() });
    if let Some(rule_id) = net_rule(family, port_be, &addr) {
        return if decide(rec, deny_reason::RULE, rule_id, age) {
            DENY
        } else {
            ALLOW
        };
    }
    if allowlisted(uid, cgroup, tgid) {
        return ALLOW;
    }
    let reason = if stale {
        deny_reason::HEARTBEAT
    } else if ring_cannot_hold_net_record() {
        deny_reason::UNRECORDED
    } else {
        return ALLOW;
    };
    if decide(rec, reason, 0, age) {
        DENY
    } else {
        ALLOW
    }
}

/// The capture probe writes the connect's record at syscall exit; refuse up front when the
/// ring has no room left for it (with slack for concurrent producers).
#[inline(always)]
fn ring_cannot_hold_net_record() -> bool {
    let size = EVENTS.query(BPF_RB_RING_SIZE);
    let used = EVENTS.query(BPF_RB_AVAIL_DATA);
    size.saturating_sub(used) < 4 * size_of::<NetRecord>() as u64
}
