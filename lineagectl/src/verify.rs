//! `lineagectl verify` and `lineagectl head`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use lineage_evidence::verify::{Report, TrustMode};
use lineage_evidence::{verify_dir, PublicKey, VerifyOptions};

use crate::cli::{HeadArgs, TrustArgs, VerifyArgs};
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

pub fn run(a: &VerifyArgs) -> Result<i32> {
    logdir::require_single_log(&a.dir)?;
    let opts = VerifyOptions {
        trusted_keys: load_keys(&a.trust)?,
        known_head: a.head,
    };
    let report =
        verify_dir(&a.dir, &opts).with_context(|| format!("reading {}", a.dir.display()))?;
    let code = exit::for_outcome(report.outcome);
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["exit_code"] = code.into();
        v["directory"] = a.dir.display().to_string().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_human(&a.dir, &report, code);
    }
    Ok(code)
}

fn print_human(dir: &Path, r: &Report, code: i32) {
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
