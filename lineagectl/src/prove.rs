//! `lineagectl prove` and `lineagectl verify-proof`.

use std::fs::File;

use anyhow::{bail, Context, Result};
use lineage_evidence::checkpoint::{Checkpoint, Note};
use lineage_evidence::entry::Entry;
use lineage_evidence::segment::{SegmentHeader, SegmentView};
use lineage_evidence::store::{read_bounded, SegmentStore};
use lineage_evidence::tlog;
use lineage_evidence::witnessed;
use lineage_evidence::witnessed_proof::{WitnessedProof, WITNESSED_MAGIC};
use lineage_evidence::Proof;

use crate::cli::{ProveArgs, VerifyProofArgs};
use crate::exit;
use crate::logdir;
use crate::verify::{load_one_key, load_vkey};

/// The cosigned checkpoint with the largest tree that covers `segment` (and that the log
/// itself reproduces), with the segment's inclusion path in it.
fn covering_checkpoint(
    a: &ProveArgs,
    segment: u64,
) -> Result<Option<(Note, Vec<lineage_evidence::Digest>)>> {
    let mut notes: Vec<Note> = Vec::new();
    let mut dirs = vec![tlog::dir_of(&a.dir)];
    for p in &a.cosigned {
        if p.is_dir() {
            dirs.push(p.clone());
            dirs.push(tlog::dir_of(p));
        } else {
            let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            notes.push(Note::parse(&b).with_context(|| format!("{}", p.display()))?);
        }
    }
    for d in dirs {
        notes.extend(
            tlog::read_cosigned(&d)?
                .into_iter()
                .filter_map(|(_, n)| n.ok()),
        );
    }
    notes.sort_by_key(|n| std::cmp::Reverse(Checkpoint::parse_body(&n.text).map_or(0, |c| c.size)));
    for n in notes {
        if let Some(path) = witnessed::segment_inclusion(&a.dir, segment, &n)? {
            return Ok(Some((n, path)));
        }
    }
    Ok(None)
}

pub fn prove(a: &ProveArgs) -> Result<i32> {
    logdir::require_single_log(&a.dir)?;
    let store =
        SegmentStore::open(&a.dir).with_context(|| format!("opening {}", a.dir.display()))?;
    let listing = store.list()?;
    // Headers are at the start of each file; find the segment by reading headers only.
    let mut found = None;
    for (_, path) in &listing.segments {
        let mut f = File::open(path).with_context(|| format!("{}", path.display()))?;
        let Ok(Ok(h)) = SegmentHeader::read_from(&mut f) else {
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
    let segment = proof.header.segment_number;
    let summary = format!(
        "entry {} of segment {segment} ({} entries, path of {} hashes), signed by key {}",
        a.entry,
        proof.header.entry_count,
        proof.path.len(),
        proof.header.key_id
    );
    let (bytes, cosigned) = match covering_checkpoint(a, segment)? {
        Some((note, path)) => {
            let size = Checkpoint::parse_body(&note.text).map_or(0, |c| c.size);
            let wp = WitnessedProof::new(proof, &note, path);
            let who: Vec<String> = wp.note.signatures.iter().map(|s| s.name.clone()).collect();
            (
                wp.to_bytes(),
                format!(
                    "; carries the checkpoint of {size} segments cosigned by {}",
                    who.join(", ")
                ),
            )
        }
        None => (
            proof.to_bytes(),
            format!(
                "; no cosigned checkpoint covers segment {segment} yet, so checking it needs --key"
            ),
        ),
    };
    std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} ({} bytes): {summary}{cosigned}",
        out.display(),
        bytes.len()
    );
    Ok(exit::OK)
}

pub fn verify_proof(a: &VerifyProofArgs) -> Result<i32> {
    let key = a.key.as_deref().map(load_one_key).transpose()?;
    let witnesses = a
        .witnesses
        .iter()
        .map(|k| load_vkey(k))
        .collect::<Result<Vec<_>>>()?;
    let quorum = a.quorum.unwrap_or(witnesses.len());
    if !witnesses.is_empty() && (quorum == 0 || quorum > witnesses.len()) {
        bail!(
            "--quorum {quorum}: must be between 1 and the {} --witness key(s)",
            witnesses.len()
        );
    }
    let bytes = read_bounded(&a.file)?;
    // (proof, who vouched)
    let result: Result<(Proof, Option<String>), String> = if bytes.starts_with(&WITNESSED_MAGIC) {
        WitnessedProof::parse(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|wp| {
                if witnesses.is_empty() {
                    return Err("the proof carries a cosigned checkpoint: give --witness".into());
                }
                let v = wp.verify(&witnesses, quorum).map_err(|e| e.to_string())?;
                if let Some(k) = &key {
                    wp.proof.verify(k).map_err(|e| e.to_string())?;
                }
                let who: Vec<String> = v
                    .cosigners
                    .iter()
                    .map(|(n, t)| format!("{n} at {t}"))
                    .collect();
                Ok((
                    wp.proof,
                    Some(format!(
                        "in the tree of {} segments cosigned by {}",
                        v.checkpoint.size,
                        who.join(", ")
                    )),
                ))
            })
    } else {
        match &key {
            None => Err("a proof without a cosigned checkpoint needs --key".into()),
            Some(k) => Proof::parse(&bytes)
                .and_then(|p| p.verify(k).map(|()| p))
                .map(|p| (p, None))
                .map_err(|e| e.to_string()),
        }
    };
    match result {
        Ok((p, vouched)) => {
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
                    "witnessed": vouched,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "VALID: entry {} ({kind}, {} bytes) is in segment {} of host {}, sealed at {} ns by key {}{}",
                    p.index,
                    p.entry.len(),
                    p.header.segment_number,
                    p.header.host_id,
                    p.header.seal_time_ns,
                    p.header.key_id,
                    vouched.map_or(String::new(), |v| format!(", {v}"))
                );
            }
            Ok(exit::OK)
        }
        Err(e) => {
            if a.json {
                println!("{}", serde_json::json!({"valid": false, "error": e}));
            } else {
                println!("INVALID: {e}");
            }
            Ok(exit::INTEGRITY)
        }
    }
}
