//! Append and verify throughput with ~300-byte entries (the target: ≥ 1 M entries/s
//! per core for each).
//!
//! - `append`: `ChainWriter::append_event` of a 300-byte entry (leaf hash + link hash + copy);
//!   the segment is sealed every 10,000 entries outside the timed region.
//! - `append_and_seal`: 10,000 appends plus the seal (Merkle root over 10,000 leaves and one
//!   Ed25519 signature), reported per entry.
//! - `verify_segment`: parse + signature + every link + Merkle root of a 10,000-entry segment,
//!   per entry, in memory.
//! - `verify_dir`: the full directory verifier (file reads, control-entry decoding, continuity)
//!   over 10 segments × 10,000 entries on disk, per entry.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lineage_evidence::entry::Event;
use lineage_evidence::segment::SegmentView;
use lineage_evidence::{verify_dir, ChainWriter, HostId, SecretKey, SegmentStore, VerifyOptions};
use std::hint::black_box;

const ENTRY_LEN: usize = 300;
const PAYLOAD: usize = ENTRY_LEN - Event::PREFIX_LEN;
const PER_SEGMENT: u64 = 10_000;

fn key() -> SecretKey {
    SecretKey::from_seed([7; 32])
}

fn bench_append(c: &mut Criterion) {
    let key = key();
    let payload = [0xabu8; PAYLOAD];
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("append_300B", |b| {
        let mut w = ChainWriter::new(HostId([1; 16]));
        b.iter(|| {
            if w.pending_entries() == PER_SEGMENT {
                black_box(w.seal(0, &key));
            }
            black_box(w.append_event(1, black_box(&payload)).unwrap())
        })
    });
    g.throughput(Throughput::Elements(PER_SEGMENT));
    g.bench_function("append_and_seal_300B_x10k", |b| {
        let mut w = ChainWriter::new(HostId([1; 16]));
        b.iter(|| {
            for _ in 0..PER_SEGMENT {
                w.append_event(1, black_box(&payload)).unwrap();
            }
            black_box(w.seal(0, &key))
        })
    });
    g.finish();
}

fn bench_verify(c: &mut Criterion) {
    let key = key();
    let payload = [0xabu8; PAYLOAD];
    let mut w = ChainWriter::new(HostId([1; 16]));
    for _ in 0..PER_SEGMENT {
        w.append_event(1, &payload).unwrap();
    }
    let bytes = w.seal(0, &key).to_bytes();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(PER_SEGMENT));
    g.bench_function("verify_segment_300B_x10k", |b| {
        let mut leaves = Vec::new();
        b.iter(|| {
            let v = SegmentView::parse(black_box(&bytes)).unwrap();
            v.check(&mut leaves).unwrap();
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    let mut w = ChainWriter::new(HostId([1; 16]));
    for s in 0..10 {
        for _ in 0..PER_SEGMENT {
            w.append_event(1, &payload).unwrap();
        }
        store.write(&w.seal(s, &key)).unwrap();
    }
    let opts = VerifyOptions {
        trusted_keys: vec![key.public()],
        known_head: None,
    };
    g.throughput(Throughput::Elements(10 * PER_SEGMENT));
    g.sample_size(10);
    g.bench_function("verify_dir_300B_10x10k", |b| {
        b.iter_batched(
            || (),
            |()| {
                let r = verify_dir(dir.path(), &opts).unwrap();
                assert!(r.findings.is_empty());
                r
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_append, bench_verify);
criterion_main!(benches);
