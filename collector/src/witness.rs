//! The collector's countersignature. For every segment it accepts, the collector signs
//! `"lineage/witness/v1" || header digest` with its own Ed25519 key and stores the 64-byte
//! signature beside the segment. A witness signature shows that this collector held and
//! verified that exact header at that time: an agent (or whoever owns its key) cannot later
//! re-sign a different history without disagreeing with the collector's witnesses.

use std::path::Path;

use lineage_evidence::digest::Digest;
use lineage_evidence::keys::{KeyError, PublicKey, SecretKey, SIGNATURE_LEN};

/// Domain separation for witness signatures.
pub const WITNESS_CONTEXT: &[u8] = b"lineage/witness/v1";

/// Witness key errors.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// Loading or generating the key failed.
    #[error("witness key {path}: {source}")]
    Key {
        /// The key file.
        path: std::path::PathBuf,
        /// The cause.
        source: KeyError,
    },
    /// Creating the key's directory failed.
    #[error("witness key directory {path}: {source}")]
    Dir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The message a witness signs.
pub fn message(header_digest: &Digest) -> Vec<u8> {
    let mut m = Vec::with_capacity(WITNESS_CONTEXT.len() + 32);
    m.extend_from_slice(WITNESS_CONTEXT);
    m.extend_from_slice(&header_digest.0);
    m
}

/// Signs a header digest.
pub fn sign(key: &SecretKey, header_digest: &Digest) -> [u8; SIGNATURE_LEN] {
    key.sign(&message(header_digest))
}

/// Checks a witness signature.
pub fn verify(key: &PublicKey, header_digest: &Digest, sig: &[u8]) -> bool {
    let Ok(sig) = <[u8; SIGNATURE_LEN]>::try_from(sig) else {
        return false;
    };
    key.verify(&message(header_digest), &sig)
}

/// Loads the witness key, generating it (mode 0600, through the evidence library) when the
/// file does not exist yet.
pub fn load_or_generate(path: &Path) -> Result<(SecretKey, bool), WitnessError> {
    let key_err = |source| WitnessError::Key {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        return Ok((SecretKey::load(path).map_err(key_err)?, false));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| WitnessError::Dir {
            path: dir.to_owned(),
            source,
        })?;
    }
    let key = SecretKey::generate();
    key.save(path).map_err(key_err)?;
    Ok((key, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_private_and_signatures_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k/witness.key");
        let (k, created) = load_or_generate(&p).unwrap();
        assert!(created);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (k2, created) = load_or_generate(&p).unwrap();
        assert!(!created);
        assert_eq!(k.public(), k2.public());
        let d = Digest([7; 32]);
        let s = sign(&k, &d);
        assert!(verify(&k.public(), &d, &s));
        assert!(!verify(&k.public(), &Digest([8; 32]), &s));
    }
}
