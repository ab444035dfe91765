//! The enforcement programs and maps: apply a compiled policy, attach the exec and connect
//! programs, refresh the heartbeat, and turn kernel decisions and counters into chain entries.

use std::{fs::File, path::Path};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::{links::CgroupAttachMode, CgroupSockAddr, TracePoint},
    Ebpf,
};
use lineage_common::{
    deny_reason, enforce_mode, enforce_target, EnforceConfig, EnforceRecord, ENFORCE_SLOTS,
    NET4_KEY_LEN, NET6_KEY_LEN, PATH_CAP, RECORD_LOST_BASE,
};
use lineage_evidence::entry::{Enforcement, EnforcementForm};

use super::{Compiled, EnforceError, NetKey};

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> EnforceError {
    move |source| EnforceError::Map { map, source }
}

fn prog_err(program: &'static str) -> impl Fn(aya::programs::ProgramError) -> EnforceError {
    move |source| EnforceError::Program { program, source }
}

macro_rules! map_mut {
    ($ebpf:expr, $name:literal, $ty:ty) => {{
        let m = $ebpf
            .map_mut($name)
            .ok_or(EnforceError::MissingMap($name))?;
        <$ty>::try_from(m).map_err(map_err($name))?
    }};
}

/// Empties a hash map or trie before it is refilled (SIGHUP may remove rules).
fn clear<K: aya::Pod, V: aya::Pod>(
    m: &mut HashMap<&mut MapData, K, V>,
    name: &'static str,
) -> Result<(), EnforceError> {
    let keys: Vec<K> = m.keys().filter_map(Result::ok).collect();
    for k in keys {
        m.remove(&k).map_err(map_err(name))?;
    }
    Ok(())
}

fn clear_trie<K: aya::Pod, V: aya::Pod>(
    m: &mut LpmTrie<&mut MapData, K, V>,
    name: &'static str,
) -> Result<(), EnforceError> {
    let keys: Vec<Key<K>> = m.keys().filter_map(Result::ok).collect();
    for k in keys {
        m.remove(&k).map_err(map_err(name))?;
    }
    Ok(())
}

fn fill_u64(ebpf: &mut Ebpf, name: &'static str, items: &[(u64, u32)]) -> Result<(), EnforceError> {
    let m = ebpf.map_mut(name).ok_or(EnforceError::MissingMap(name))?;
    let mut m: HashMap<_, u64, u32> = HashMap::try_from(m).map_err(map_err(name))?;
    clear(&mut m, name)?;
    for (k, v) in items {
        m.insert(k, v, 0).map_err(map_err(name))?;
    }
    Ok(())
}

fn fill_u32(ebpf: &mut Ebpf, name: &'static str, items: &[(u32, u32)]) -> Result<(), EnforceError> {
    let m = ebpf.map_mut(name).ok_or(EnforceError::MissingMap(name))?;
    let mut m: HashMap<_, u32, u32> = HashMap::try_from(m).map_err(map_err(name))?;
    clear(&mut m, name)?;
    for (k, v) in items {
        m.insert(k, v, 0).map_err(map_err(name))?;
    }
    Ok(())
}

fn fill_trie<const N: usize>(
    ebpf: &mut Ebpf,
    name: &'static str,
    items: &[((u32, [u8; N]), u32)],
) -> Result<(), EnforceError> {
    let m = ebpf.map_mut(name).ok_or(EnforceError::MissingMap(name))?;
    let mut m: LpmTrie<_, [u8; N], u32> = LpmTrie::try_from(m).map_err(map_err(name))?;
    clear_trie(&mut m, name)?;
    for ((bits, data), v) in items {
        m.insert(&Key::new(*bits, *data), v, 0)
            .map_err(map_err(name))?;
    }
    Ok(())
}

/// Writes the policy into the maps. The config slot (mode) goes last, so the programs never
/// act on a half-written policy.
pub fn apply(ebpf: &mut Ebpf, c: &Compiled) -> Result<(), EnforceError> {
    let ones = |v: &[u64]| v.iter().map(|k| (*k, 1)).collect::<Vec<_>>();
    fill_u64(ebpf, "ENFORCE_SCOPE", &ones(&c.scope))?;
    fill_u64(ebpf, "ALLOW_CGROUPS", &ones(&c.allow_cgroups))?;
    let uids: Vec<(u32, u32)> = c.allow_uids.iter().map(|u| (*u, 1)).collect();
    fill_u32(ebpf, "ALLOW_UIDS", &uids)?;
    let allow: Vec<((u32, [u8; PATH_CAP]), u32)> = c.allow_paths.iter().map(|k| (*k, 1)).collect();
    fill_trie(ebpf, "ALLOW_PATHS", &allow)?;
    fill_trie(ebpf, "DENY_EXEC_PATHS", &c.deny_paths)?;
    fill_u32(ebpf, "DENY_EXEC_UIDS", &c.deny_uids)?;
    fill_u64(ebpf, "DENY_EXEC_CGROUPS", &c.deny_cgroups)?;
    let mut v4: Vec<((u32, [u8; NET4_KEY_LEN]), u32)> = Vec::new();
    let mut v6: Vec<((u32, [u8; NET6_KEY_LEN]), u32)> = Vec::new();
    for (key, id) in &c.deny_net {
        match key {
            NetKey::V4(bits, d) => v4.push(((*bits, *d), *id)),
            NetKey::V6(bits, d) => v6.push(((*bits, *d), *id)),
        }
    }
    fill_trie(ebpf, "DENY_NET4", &v4)?;
    fill_trie(ebpf, "DENY_NET6", &v6)?;
    let mut cfg = map_mut!(ebpf, "ENFORCE_CONFIG", Array<_, EnforceConfig>);
    cfg.set(0, c.config, 0).map_err(map_err("ENFORCE_CONFIG"))?;
    Ok(())
}

/// Loads and attaches the exec program and the connect programs (on the cgroup v2 root).
/// Called once, when the agent starts in a mode other than observe.
pub fn attach(ebpf: &mut Ebpf, cgroup_root: &Path) -> Result<(), EnforceError> {
    let name = "enforce_exec";
    let tp: &mut TracePoint = ebpf
        .program_mut(name)
        .ok_or(EnforceError::MissingMap(name))?
        .try_into()
        .map_err(prog_err(name))?;
    tp.load().map_err(prog_err(name))?;
    tp.attach("sched", "sched_process_exec")
        .map_err(prog_err(name))?;
    for name in ["enforce_connect4", "enforce_connect6"] {
        let root = File::open(cgroup_root).map_err(|source| EnforceError::Cgroup {
            path: cgroup_root.into(),
            source,
        })?;
        let p: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .ok_or(EnforceError::MissingMap(name))?
            .try_into()
            .map_err(prog_err(name))?;
        p.load().map_err(prog_err(name))?;
        // Through a bpf_link, which always coexists with other programs; the kernel refuses
        // link attach flags, so the mode must be the flagless default.
        p.attach(root, CgroupAttachMode::Single)
            .map_err(prog_err(name))?;
    }
    Ok(())
}

/// Marks the pipeline healthy as of `boot_ns` (CLOCK_BOOTTIME, the programs' clock).
pub fn beat(ebpf: &mut Ebpf, boot_ns: u64) -> Result<(), EnforceError> {
    let mut hb = map_mut!(ebpf, "HEARTBEAT", Array<_, u64>);
    hb.set(0, boot_ns, 0).map_err(map_err("HEARTBEAT"))
}

/// The heartbeat's last value.
pub fn last_beat(ebpf: &Ebpf) -> Result<u64, EnforceError> {
    let m = ebpf
        .map("HEARTBEAT")
        .ok_or(EnforceError::MissingMap("HEARTBEAT"))?;
    let hb: Array<_, u64> = Array::try_from(m).map_err(map_err("HEARTBEAT"))?;
    hb.get(&0, 0).map_err(map_err("HEARTBEAT"))
}

/// Decision counters summed over CPUs, by slot (`reason`, `RECORD_LOST_BASE + reason`).
pub fn counters(ebpf: &Ebpf) -> Result<[u64; ENFORCE_SLOTS as usize], EnforceError> {
    let m = ebpf
        .map("DECIDED")
        .ok_or(EnforceError::MissingMap("DECIDED"))?;
    let a: PerCpuArray<_, u64> = PerCpuArray::try_from(m).map_err(map_err("DECIDED"))?;
    let mut out = [0u64; ENFORCE_SLOTS as usize];
    for (slot, v) in out.iter_mut().enumerate() {
        *v = a
            .get(&(slot as u32), 0)
            .map_err(map_err("DECIDED"))?
            .iter()
            .sum();
    }
    Ok(out)
}

pub fn reason_name(reason: u32) -> &'static str {
    match reason {
        deny_reason::HEARTBEAT => "heartbeat",
        deny_reason::UNRECORDED => "unrecorded",
        deny_reason::RULE => "rule",
        _ => "unknown",
    }
}

/// A SUMMARY entry: cumulative decisions per reason since the agent started, and how many of
/// them have no DECISION entry because their record could not be written.
pub fn summary_entry(counts: &[u64; ENFORCE_SLOTS as usize], mode: super::Mode) -> Enforcement {
    let mut decided = serde_json::Map::new();
    let mut unrecorded = serde_json::Map::new();
    for reason in [
        deny_reason::HEARTBEAT,
        deny_reason::UNRECORDED,
        deny_reason::RULE,
    ] {
        decided.insert(reason_name(reason).into(), counts[reason as usize].into());
        unrecorded.insert(
            reason_name(reason).into(),
            counts[(RECORD_LOST_BASE + reason) as usize].into(),
        );
    }
    Enforcement {
        form: EnforcementForm::Summary,
        json: serde_json::json!({
            "mode": mode.name(),
            "decisions": decided,
            "decisions_without_entry": unrecorded,
        })
        .to_string(),
    }
}

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A DECISION entry from one kernel record, with the actor's lineage (`exec_id` and its
/// ancestors, when the process is known) filled in by the caller.
pub fn decision_json(rec: &EnforceRecord) -> serde_json::Value {
    let action = if rec.mode == enforce_mode::ENFORCE {
        "deny"
    } else {
        "would-deny"
    };
    let mut v = serde_json::json!({
        "action": action,
        "reason": reason_name(rec.reason),
        "rule_id": rec.rule_id,
        "time_boot_ns": rec.ktime_ns,
        "heartbeat_age_ns": rec.heartbeat_age_ns,
        "pid": rec.pid,
        "tgid": rec.tgid,
        "uid": rec.uid,
        "gid": rec.gid,
        "cgroup_id": rec.cgroup_id,
        "comm": text(&rec.comm),
    });
    if rec.target == enforce_target::EXEC {
        let n = (rec.filename_len as usize).min(PATH_CAP);
        v["target"] = "exec".into();
        v["filename"] = String::from_utf8_lossy(&rec.filename[..n])
            .into_owned()
            .into();
    } else {
        v["target"] = "connect".into();
        let ip = match rec.addr_len {
            4 => std::net::IpAddr::from(<[u8; 4]>::try_from(&rec.addr[..4]).unwrap_or_default()),
            _ => std::net::IpAddr::from(rec.addr),
        };
        v["address"] = ip.to_string().into();
        v["port"] = rec.port.into();
    }
    v
}

/// Takes the decisions ring buffer out of the object.
pub fn take_decisions(ebpf: &mut Ebpf) -> Result<RingBuf<MapData>, EnforceError> {
    let m = ebpf
        .take_map("DECISIONS")
        .ok_or(EnforceError::MissingMap("DECISIONS"))?;
    RingBuf::try_from(m).map_err(map_err("DECISIONS"))
}

/// Drains the decisions ring; each record is passed to `f`.
pub fn drain(ring: &mut RingBuf<MapData>, mut f: impl FnMut(EnforceRecord)) {
    while let Some(item) = ring.next() {
        if item.len() >= std::mem::size_of::<EnforceRecord>() {
            // SAFETY: the kernel wrote a whole EnforceRecord (plain integers and bytes).
            let rec = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const EnforceRecord) };
            f(rec);
        }
    }
}
