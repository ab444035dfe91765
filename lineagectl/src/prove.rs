//! `lineagectl prove` and `lineagectl verify-proof`.

use std::fs::File;
use std::io::Read;

use anyhow::{bail, Context, Result};
use lineage_evidence::entry::Entry;
use lineage_evidence::segment::{SegmentHeader, SegmentView, HEADER_LEN};
use lineage_evidence::store::{read_bounded, SegmentStore};
use lineage_evidence::Proof;

use crate::cli::{ProveArgs, VerifyProofArgs};
use crate::exit;
use crate::logdir;
use crate::verify::load_one_key;

pub fn prove(a: &ProveArgs) -> Result<i32> {
    logdir::require_single_log(&a.dir)?;
    let store =
        SegmentStore::open(&a.dir).with_context(|| format!("opening {}", a.dir.display()))?;
    let listing = store.list()?;
    // Headers are at the start of each file; find the segment by reading headers only.
    let mut found = None;
    for (_, path) in &listing.segments {
        let mut header = [0u8; HEADER_LEN];
        let mut f = File::open(path).with_context(|| format!("{}", path.display()))?;
        if f.read_exact(&mut header).is_err() {
            continue;
        }
        let Ok(h) = SegmentHeader::parse(&header) else {
            continue;
        };
        if h.first_index <= a.entry && a.entry < h.end_index() {
            found = Some((path.clone(), read_bounded(path)?));
            break;
        }
    }
    let Some((path, bytes)) = found else {
        bail!("no segment in {} holds entry {}", a.dir.display(), a.entry);
    };
    let view = SegmentView::parse(&bytes).with_context(|| format!("{}", path.display()))?;
    view.check(&mut Vec::new()).with_context(|| {
        format!(
            "{} does not verify; refusing to prove from it",
            path.display()
        )
    })?;
    let proof = Proof::build(&view, a.entry)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| format!("entry-{}.proof", a.entry).into());
    std::fs::write(&out, proof.to_bytes()).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} ({} bytes): entry {} of segment {} ({} entries, path of {} hashes), signed by key {}",
        out.display(),
        proof.to_bytes().len(),
        a.entry,
        proof.header.segment_number,
        proof.header.entry_count,
        proof.path.len(),
        proof.header.key_id
    );
    Ok(exit::OK)
}

pub fn verify_proof(a: &VerifyProofArgs) -> Result<i32> {
    let key = load_one_key(&a.key)?;
    let bytes = read_bounded(&a.file)?;
    let result = Proof::parse(&bytes).and_then(|p| p.verify(&key).map(|()| p));
    match result {
        Ok(p) => {
            let kind = match Entry::parse(&p.entry) {
                Ok(e) => e.kind().map_or("UNKNOWN", |k| k.name()).to_string(),
                Err(e) => format!("undecodable ({e})"),
            };
            if a.json {
                let v = serde_json::json!({
                    "valid": true,
                    "index": p.index,
                    "segment": p.header.segment_number,
                    "host_id": p.header.host_id,
                    "seal_time_ns": p.header.seal_time_ns,
                    "key_id": p.header.key_id,
                    "entry_kind": kind,
                    "entry_hex": hex::encode(&p.entry),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "VALID: entry {} ({kind}, {} bytes) is in segment {} of host {}, sealed at {} ns by key {}",
                    p.index,
                    p.entry.len(),
                    p.header.segment_number,
                    p.header.host_id,
                    p.header.seal_time_ns,
                    p.header.key_id
                );
            }
            Ok(exit::OK)
        }
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"valid": false, "error": e.to_string()})
                );
            } else {
                println!("INVALID: {e}");
            }
            Ok(exit::INTEGRITY)
        }
    }
}
