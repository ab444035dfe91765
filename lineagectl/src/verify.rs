//! `lineagectl verify` and `lineagectl head`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use lineage_evidence::checkpoint::{VerifierKey, SIG_COSIGNATURE_V1};
use lineage_evidence::verify::{Report, TrustMode};
use lineage_evidence::witnessed::{self, WitnessPolicy, WitnessReport};
use lineage_evidence::{verify_dir, PublicKey, VerifyOptions};

use crate::cli::{HeadArgs, TrustArgs, VerifyArgs, WitnessArgs};
use crate::exit;
use crate::logdir;

/// Loads `--key` and `--trusted-keys` arguments.
pub fn load_keys(t: &TrustArgs) -> Result<Vec<PublicKey>> {
    let mut keys = Vec::new();
    for k in &t.keys {
        keys.push(load_one_key(k)?);
    }
    for f in &t.trusted_keys {
        let mut more =
            PublicKey::load_file(f).with_context(|| format!("reading {}", f.display()))?;
        if more.is_empty() {
            bail!("{}: no keys in trusted-keys file", f.display());
        }
        keys.append(&mut more);
    }
    Ok(keys)
}

/// A key given as a file or as 64 hex characters.
pub fn load_one_key(k: &str) -> Result<PublicKey> {
    let p = Path::new(k);
    if p.exists() {
        let keys = PublicKey::load_file(p).with_context(|| format!("reading {k}"))?;
        match keys.as_slice() {
            [one] => Ok(*one),
            _ => bail!("{k}: expected exactly one public key, found {}", keys.len()),
        }
    } else {
        PublicKey::parse_one(k)
            .with_context(|| format!("{k}: neither a key file nor a hex public key"))
    }
}

/// A cosigner verifier key given inline or as a file holding one.
pub fn load_vkey(k: &str) -> Result<VerifierKey> {
    let p = Path::new(k);
    let text = if p.exists() {
        std::fs::read_to_string(p).with_context(|| format!("reading {k}"))?
    } else {
        k.to_owned()
    };
    let vk = VerifierKey::parse(&text)
        .with_context(|| format!("{k}: not a C2SP verifier key (<name>+<key id>+<key>)"))?;
    if vk.sig_type != SIG_COSIGNATURE_V1 {
        bail!("{k}: not a cosignature/v1 (type 0x04) witness key");
    }
    Ok(vk)
}

/// The witness policy of `--witness`/`--quorum`/`--cosigned`, if any witness is given.
fn witness_policy(w: &WitnessArgs) -> Result<Option<WitnessPolicy>> {
    if w.witnesses.is_empty() {
        return Ok(None);
    }
    let witnesses = w
        .witnesses
        .iter()
        .map(|k| load_vkey(k))
        .collect::<Result<Vec<_>>>()?;
    let quorum = w.quorum.unwrap_or(witnesses.len());
    if quorum == 0 || quorum > witnesses.len() {
        bail!(
            "--quorum {quorum}: must be between 1 and the {} --witness key(s)",
            witnesses.len()
        );
    }
    Ok(Some(WitnessPolicy {
        witnesses,
        quorum,
        extra: w.cosigned.clone(),
    }))
}

pub fn run(a: &VerifyArgs) -> Result<i32> {
    logdir::require_single_log(&a.dir)?;
    let opts = VerifyOptions {
        trusted_keys: load_keys(&a.trust)?,
        known_head: a.head,
    };
    let policy = witness_policy(&a.witness)?;
    let mut report =
        verify_dir(&a.dir, &opts).with_context(|| format!("reading {}", a.dir.display()))?;
    let witness = match (&policy, report.host_id) {
        (Some(p), Some(host)) => {
            let w = witnessed::check(&a.dir, host, p)
                .with_context(|| format!("checking {} against its witnesses", a.dir.display()))?;
            for f in &w.findings {
                report.outcome = report.outcome.max(f.kind.outcome());
            }
            report.findings.extend(w.findings.iter().cloned());
            Some(w)
        }
        // No intact segment: the main verifier already reports it.
        _ => None,
    };
    let code = exit::for_outcome(report.outcome);
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["exit_code"] = code.into();
        v["directory"] = a.dir.display().to_string().into();
        if let Some(w) = &witness {
            v["witness"] = serde_json::to_value(w)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_human(&a.dir, &report, witness.as_ref(), code);
    }
    Ok(code)
}

fn print_human(dir: &Path, r: &Report, w: Option<&WitnessReport>, code: i32) {
    println!("log:       {}", dir.display());
    if let Some(h) = r.host_id {
        println!("host:      {h}");
    }
    println!(
        "checked:   {} segment file(s), {} segment(s) intact, {} entries intact",
        r.files, r.segments_ok, r.entries_ok
    );
    if !r.entry_kinds.is_empty() {
        let kinds: Vec<String> = r
            .entry_kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!("entries:   {}", kinds.join(", "));
    }
    for k in &r.keys {
        println!("key:       {} signed segment(s) {}", k.key_id, k.segments);
    }
    match r.trust {
        TrustMode::Anchored => println!("trust:     anchored in the supplied key(s)"),
        TrustMode::InternalConsistencyOnly => {
            println!("trust:     NONE - internal consistency only")
        }
    }
    if let Some(h) = r.head {
        println!(
            "ends at:   segment {} (digest {}), {} entries, head link {}",
            h.segment, h.segment_digest, h.next_index, h.chain_head
        );
    }
    if let Some(w) = w {
        for v in &w.witnesses {
            match (v.size, v.time) {
                (Some(size), Some(t)) => println!(
                    "witness:   {} cosigned {size} segment(s) at {t}: {}",
                    v.name,
                    if v.covers {
                        "covered by the log"
                    } else {
                        "NOT covered by the log"
                    }
                ),
                _ => println!("witness:   {} cosigned no checkpoint of this log", v.name),
            }
        }
        println!(
            "witnessed: segments 0..{} by {} of {} witness(es) required; {} newer segment(s) not yet cosigned",
            w.witnessed_size, w.quorum, w.witnesses.len(), w.behind
        );
    }
    for n in &r.notices {
        println!("note:      {n}");
    }
    if r.findings.is_empty() {
        println!("findings:  none");
    } else {
        println!("findings:  {}", r.findings.len());
        for f in &r.findings {
            println!("  {f}");
        }
    }
    let verdict = match code {
        exit::OK => "OK",
        exit::INTEGRITY => "INTEGRITY FAILURE",
        exit::COMPLETENESS => "COMPLETENESS FAILURE",
        exit::DECLARED_LOSS => "DECLARED LOSS ONLY",
        _ => "ERROR",
    };
    println!("result:    {verdict} (exit {code})");
}

pub fn head(a: &HeadArgs) -> Result<i32> {
    logdir::require_single_log(&a.dir)?;
    let opts = VerifyOptions {
        trusted_keys: load_keys(&a.trust)?,
        known_head: None,
    };
    let report =
        verify_dir(&a.dir, &opts).with_context(|| format!("reading {}", a.dir.display()))?;
    let Some(h) = report.head else {
        bail!("{}: no intact segment, so no head", a.dir.display());
    };
    let [seg, entry] = h.as_known_heads();
    if a.json {
        let v = serde_json::json!({
            "segment": seg.to_string(),
            "entry": entry.to_string(),
            "head": h,
            "outcome": report.outcome,
            "findings": report.findings.len(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{seg}");
        println!("{entry}");
        if !report.findings.is_empty() {
            eprintln!(
                "warning: the log has {} finding(s); run `lineagectl verify` before trusting this head",
                report.findings.len()
            );
        }
    }
    Ok(exit::OK)
}
