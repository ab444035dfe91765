//! Shared helpers for the integration tests: build a signed log on disk.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::fs;
use std::path::{Path, PathBuf};

use lineage_evidence::entry::{AgentStart, ChainPosition, Heartbeat, StartReason};
use lineage_evidence::{ChainWriter, Digest, HostId, SealedSegment, SecretKey, SegmentStore};

pub const HOST: HostId = HostId([0x11; 16]);

pub fn key() -> SecretKey {
    SecretKey::from_seed([0x42; 32])
}

pub fn foreign_key() -> SecretKey {
    SecretKey::from_seed([0x66; 32])
}

/// `segments` segments with `per_segment` entries each (the first entry of segment 0 is an
/// AGENT_START, the rest are EVENTs of `payload` bytes), stored under `dir`.
pub fn build_log(
    dir: &Path,
    segments: u64,
    per_segment: u64,
    payload: usize,
) -> (ChainWriter, Vec<SealedSegment>) {
    let store = SegmentStore::create(dir).unwrap();
    let key = key();
    let mut w = ChainWriter::new(HOST);
    let mut out = Vec::new();
    for s in 0..segments {
        for i in 0..per_segment {
            if s == 0 && i == 0 {
                let start = AgentStart {
                    reason: StartReason::FirstStart,
                    config_digest: Digest([1; 32]),
                    last_durable: ChainPosition {
                        next_index: 0,
                        head: w.position().head,
                    },
                    agent_version: "test".into(),
                    programs: vec![],
                };
                w.append_with(|b| start.encode_into(b).unwrap()).unwrap();
            } else if i == per_segment - 1 && s % 2 == 1 {
                w.append_with(|b| {
                    Heartbeat {
                        wall_time_ns: s,
                        monotonic_ns: i,
                    }
                    .encode_into(b)
                })
                .unwrap();
            } else {
                let body = vec![(s * 31 + i) as u8; payload];
                w.append_event(1, &body).unwrap();
            }
        }
        let seg = w.seal(1_000 + s, &key);
        store.write(&seg).unwrap();
        out.push(seg);
    }
    (w, out)
}

pub fn seg_path(dir: &Path, n: u64) -> PathBuf {
    dir.join("segments").join(format!("{n:020}.seg"))
}

pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}
