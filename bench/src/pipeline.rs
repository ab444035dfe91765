//! Pipeline capacity without the kernel, on one core: the per-event work the agent does after
//! a record is decoded and joined, built from the library pieces it uses.
//!
//! Per event: serialise an event in the agent's `Event` JSON shape (exec, fork, exit in turn,
//! ~300 bytes on average) with
//! serde_json into a reused buffer; wrap it as an EVENT entry and `ChainWriter::append` it
//! (leaf + link BLAKE3); write the journal record (index, length, entry, link) through a 64 KiB
//! `BufWriter`, flushed every 256 events as the agent flushes after each drained batch; seal
//! when the agent would (100,000 entries or 16 MiB, its defaults): Merkle root, Ed25519
//! signature, `SegmentStore::write` (write + fsync + rename + directory fsync), journal reset.
//!
//! Not included, because they live in the agent binary and are not a library: decoding the
//! ring-buffer record (`agent/src/decode.rs`) and the lineage join (`pipeline.rs`,
//! `lineage.rs`). The journal write is an equivalent of `agent/src/wal.rs`'s record format,
//! not that code.

use std::{
    io::{Seek as _, SeekFrom, Write as _},
    time::{Duration, Instant},
};

use lineage_evidence::{entry::Event, ChainWriter, HostId, SecretKey, SegmentStore};
use serde::Serialize;

const SEAL_MAX_ENTRIES: u64 = 100_000;
const SEAL_MAX_BYTES: usize = 16 << 20;
const FLUSH_EVERY: u64 = 256;

/// The agent's event JSON (field names and order as `agent/src/event.rs`): the common part,
/// then the kind-specific fields flattened in.
#[derive(Serialize)]
struct BenchEvent<'a> {
    time_ns: u64,
    pid: u32,
    tgid: u32,
    exec_id: String,
    parent_exec_id: &'a str,
    cpu: u32,
    seq: u64,
    #[serde(flatten)]
    detail: Detail<'a>,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Detail<'a> {
    Exec {
        binary: &'a str,
        filename: &'a str,
        argv: &'a [&'a str],
        args_truncated: bool,
        comm: &'a str,
        ppid: u32,
        uid: u32,
        gid: u32,
        euid: u32,
        egid: u32,
        cgroup_id: u64,
        args_captured: bool,
    },
    Fork {
        child_pid: u32,
        child_tgid: u32,
        thread: bool,
        child_exec_id: String,
        clone_flags: u64,
    },
    Exit {
        code: u32,
        core_dumped: bool,
        process: bool,
    },
}

/// The events of a process that runs a short command: exec, fork, exit in turn, so the mean
/// payload is about 300 bytes (exec ≈ 390, fork ≈ 300, exit ≈ 220).
fn event(i: u64) -> BenchEvent<'static> {
    let pid = 10_000 + (i % 50_000) as u32;
    let t = 2_959_455_983_972 + i * 1_000;
    let detail = match i % 3 {
        0 => Detail::Exec {
            binary: "/usr/bin/git",
            filename: "/usr/bin/git",
            argv: &["git", "status", "--short"],
            args_truncated: false,
            comm: "git",
            ppid: 4242,
            uid: 1000,
            gid: 1000,
            euid: 1000,
            egid: 1000,
            cgroup_id: 4_294_967_297,
            args_captured: true,
        },
        1 => Detail::Fork {
            child_pid: pid + 1,
            child_tgid: pid + 1,
            thread: false,
            child_exec_id: format!("de737098-{}-{}", pid + 1, t + 500),
            clone_flags: 17,
        },
        _ => Detail::Exit {
            code: 0,
            core_dumped: false,
            process: true,
        },
    };
    BenchEvent {
        time_ns: t,
        pid,
        tgid: pid,
        exec_id: format!("de737098-{pid}-{t}"),
        parent_exec_id: "de737098-4242-2959400000000",
        cpu: (i % 2) as u32,
        seq: i,
        detail,
    }
}

/// Mean length of the JSON payloads (for the report).
pub fn payload_len() -> usize {
    let total: usize = (0..3u64)
        .map(|i| {
            serde_json::to_vec(&event(123_456 + i))
                .map(|v| v.len())
                .unwrap_or(0)
        })
        .sum();
    total / 3
}

#[derive(Debug, Clone, Serialize)]
pub struct CapacityRun {
    /// Journal and segment files written (false: CPU-only variant).
    pub durable: bool,
    pub events: u64,
    pub total_s: f64,
    pub events_per_s: f64,
    /// JSON serialisation alone (a separate loop over the same events).
    pub json_ns_per_event: f64,
    /// Everything but JSON: entry encode, append, journal.
    pub chain_ns_per_event: f64,
    /// Seal + sign + store write, amortised over the events.
    pub seal_ns_per_event: f64,
    pub seals: u64,
    pub max_seal_ms: f64,
    pub entry_bytes: f64,
}

/// Pins the calling thread to one CPU (the last one, away from most of the OS's work).
pub fn pin_to_one_cpu() -> Option<usize> {
    // SAFETY: sysconf has no preconditions; the cpu_set_t is ours.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n < 1 {
        return None;
    }
    let cpu = (n - 1) as usize;
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return None;
        }
    }
    Some(cpu)
}

/// One run. With `durable` false the journal and segment writes are skipped (seal and
/// signature still happen): the CPU-only ceiling, to tell CPU from storage limits apart.
pub fn run_once(events: u64, dir: &std::path::Path, durable: bool) -> anyhow::Result<CapacityRun> {
    let key = SecretKey::from_seed([7; 32]);
    let store = SegmentStore::create(dir)?;
    let journal_path = dir.join("journal");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&journal_path)?;
    let mut journal = std::io::BufWriter::with_capacity(1 << 16, file);
    let mut writer = ChainWriter::new(HostId([1; 16]));
    // Build the events first so their construction is not timed.
    let evs: Vec<BenchEvent> = (0..events).map(event).collect();

    // JSON alone.
    let mut buf = Vec::with_capacity(1024);
    let t = Instant::now();
    let mut json_bytes = 0usize;
    for e in &evs {
        buf.clear();
        serde_json::to_writer(&mut buf, e)?;
        json_bytes += buf.len();
    }
    let json = t.elapsed();
    std::hint::black_box(json_bytes);

    // The whole path.
    let mut scratch = Vec::with_capacity(1024);
    let mut seal_time = Duration::ZERO;
    let mut max_seal = Duration::ZERO;
    let mut seals = 0u64;
    let mut entry_bytes = 0usize;
    let start = Instant::now();
    for (i, e) in evs.iter().enumerate() {
        buf.clear();
        serde_json::to_writer(&mut buf, e)?;
        scratch.clear();
        Event {
            schema: 1,
            payload: &buf,
        }
        .encode_into(&mut scratch);
        entry_bytes += scratch.len();
        let (index, link) = writer.append(&scratch)?;
        if durable {
            journal.write_all(&index.to_le_bytes())?;
            journal.write_all(&(scratch.len() as u32).to_le_bytes())?;
            journal.write_all(&scratch)?;
            journal.write_all(&link.0)?;
            if (i as u64 + 1).is_multiple_of(FLUSH_EVERY) {
                journal.flush()?;
            }
        }
        if writer.pending_entries() >= SEAL_MAX_ENTRIES || writer.pending_bytes() >= SEAL_MAX_BYTES
        {
            let s = Instant::now();
            seal(
                &mut writer,
                &key,
                durable.then_some(&store),
                &mut journal,
                i as u64,
            )?;
            let d = s.elapsed();
            seal_time += d;
            max_seal = max_seal.max(d);
            seals += 1;
        }
    }
    if writer.pending_entries() > 0 {
        let s = Instant::now();
        seal(
            &mut writer,
            &key,
            durable.then_some(&store),
            &mut journal,
            events,
        )?;
        let d = s.elapsed();
        seal_time += d;
        max_seal = max_seal.max(d);
        seals += 1;
    }
    let total = start.elapsed();
    let per = |d: Duration| d.as_nanos() as f64 / events as f64;
    Ok(CapacityRun {
        durable,
        events,
        total_s: total.as_secs_f64(),
        events_per_s: events as f64 / total.as_secs_f64(),
        json_ns_per_event: per(json),
        chain_ns_per_event: per(total.saturating_sub(seal_time).saturating_sub(json)),
        seal_ns_per_event: per(seal_time),
        seals,
        max_seal_ms: max_seal.as_secs_f64() * 1e3,
        entry_bytes: entry_bytes as f64 / events as f64,
    })
}

fn seal(
    writer: &mut ChainWriter,
    key: &SecretKey,
    store: Option<&SegmentStore>,
    journal: &mut std::io::BufWriter<std::fs::File>,
    now: u64,
) -> anyhow::Result<()> {
    journal.flush()?;
    let sealed = writer.seal(now, key);
    let Some(store) = store else {
        std::hint::black_box(sealed);
        return Ok(());
    };
    store.write(&sealed)?;
    let f = journal.get_mut();
    f.set_len(0)?;
    f.seek(SeekFrom::Start(0))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_about_300_bytes() {
        let n = payload_len();
        assert!((250..=350).contains(&n), "{n}");
    }

    #[test]
    fn a_small_run_seals_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let r = run_once(1000, dir.path(), true).unwrap();
        assert_eq!(r.events, 1000);
        assert_eq!(r.seals, 1);
        let store = SegmentStore::open(dir.path()).unwrap();
        assert_eq!(store.last_number().unwrap(), Some(0));
    }
}
