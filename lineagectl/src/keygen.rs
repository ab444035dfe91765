//! `lineagectl keygen`.

use anyhow::{Context, Result};
use lineage_evidence::SecretKey;

use crate::cli::KeygenArgs;
use crate::exit;

pub fn run(a: &KeygenArgs) -> Result<i32> {
    let key = SecretKey::generate();
    let secret = a.out.with_extension("key");
    let public = a.out.with_extension("pub");
    key.save(&secret)
        .with_context(|| "writing the secret key")?;
    key.public()
        .save(&public)
        .with_context(|| "writing the public key")?;
    println!("secret key: {} (mode 0600)", secret.display());
    println!("public key: {}", public.display());
    println!("key id:     {}", key.public().key_id());
    Ok(exit::OK)
}
