//! `lineagectl enrol`: give an agent's data directory its first forward-secure sealing key,
//! certified by an identity key that stays off the host (docs/FORMAT.md §8.1).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use anyhow::{bail, Context, Result};
use lineage_evidence::sealkeys;
use lineage_evidence::{HostId, SecretKey};

use crate::cli::EnrolArgs;
use crate::exit;

pub fn run(a: &EnrolArgs) -> Result<i32> {
    let identity = SecretKey::load(&a.identity_key)
        .with_context(|| format!("reading the identity key {}", a.identity_key.display()))?;
    let host_file = a.data_dir.join("host-id");
    let host = match &a.host_id {
        Some(hex) => {
            let host = HostId::from_hex(hex).context("--host-id is not 32 hex digits")?;
            match fs::read_to_string(&host_file) {
                Ok(text) if HostId::from_hex(text.trim()).ok() != Some(host) => bail!(
                    "{} names host {}, not {hex}",
                    host_file.display(),
                    text.trim()
                ),
                Ok(_) => {}
                Err(_) => {
                    fs::create_dir_all(&a.data_dir)?;
                    fs::set_permissions(&a.data_dir, fs::Permissions::from_mode(0o700))?;
                    fs::write(&host_file, format!("{}\n", host.to_hex()))?;
                }
            }
            host
        }
        None => {
            let text = fs::read_to_string(&host_file).with_context(|| {
                format!(
                    "reading {} (start the agent once, or pass --host-id)",
                    host_file.display()
                )
            })?;
            HostId::from_hex(text.trim())
                .with_context(|| format!("{} is not a host id", host_file.display()))?
        }
    };
    let keys = a.data_dir.join("keys");
    fs::create_dir_all(&keys)?;
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o700))?;
    let cert = sealkeys::enrol(&keys, &host, &identity).context("writing the sealing key")?;
    let public = keys.join("agent.pub");
    let _ = fs::remove_file(&public);
    identity
        .public()
        .save(&public)
        .context("writing the identity public key")?;
    // A version 1 signing key would let root re-sign everything: the agent no longer uses it.
    sealkeys::erase_file(&keys.join("agent.key")).context("erasing keys/agent.key")?;
    println!("host:          {}", host.to_hex());
    println!(
        "identity key:  {} (verify with --key {})",
        cert.identity_public.key_id(),
        public.display()
    );
    println!(
        "sealing key:   {} ({})",
        cert.epoch_public.key_id(),
        keys.join(sealkeys::SEAL_KEY).display()
    );
    Ok(exit::OK)
}
