//! Ed25519 signing keys, their files and key ids.
//!
//! Trust in a log is anchored in public keys the user supplies, so key files are small,
//! line-oriented text a human can compare and paste:
//!
//! - secret key file: `lineage-ed25519-secret-v1 <64 hex chars: the 32-byte seed>\n`, mode 0600;
//!   loading refuses a file any group or other permission bit is set on.
//! - public key file / trusted-keys file: one key per line,
//!   `lineage-ed25519-public-v1 <64 hex chars> [comment]`; blank lines and `#` lines ignored.
//!
//! A key id is the first 16 bytes of `BLAKE3(0x05 || public_key)`.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use crate::digest::TAG_KEY_ID;

/// Ed25519 signature length.
pub const SIGNATURE_LEN: usize = 64;
/// Label of a secret key line.
pub const SECRET_LABEL: &str = "lineage-ed25519-secret-v1";
/// Label of a public key line.
pub const PUBLIC_LABEL: &str = "lineage-ed25519-public-v1";
/// Longest key file read (a trusted-keys file may hold many keys, but not megabytes).
pub const MAX_KEY_FILE_LEN: u64 = 1 << 20;

/// Key errors.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A secret key file can be read (or written) by group or others.
    #[error("{path}: secret key file has mode {mode:o}; refusing it (chmod 600)")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The text is not a key line of the expected kind.
    #[error("line {line}: {what}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A key file larger than [`MAX_KEY_FILE_LEN`].
    #[error("{0}: key file too large")]
    TooLarge(PathBuf),
}

/// A 16-byte key id derived from a public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// An Ed25519 public key as 32 raw bytes. Not validated as a curve point until it verifies.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Wraps raw bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        PublicKey(b)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `BLAKE3(0x05 || key)[..16]`.
    pub fn key_id(&self) -> KeyId {
        let mut h = blake3::Hasher::new();
        h.update(&[TAG_KEY_ID]);
        h.update(&self.0);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        KeyId(id)
    }

    /// Strict Ed25519 verification (FORMAT.md §2.1): the public key `A` and the signature's
    /// `R` must be canonical encodings of points that are not of small order, and `S` must be
    /// below the group order. `verify_strict` checks all of that except a non-canonical `A`
    /// (a `y` coordinate ≥ p), which is refused here first.
    pub fn verify(&self, msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
        if !is_canonical_point_encoding(&self.0) {
            return false;
        }
        let Ok(vk) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    }

    /// `lineage-ed25519-public-v1 <hex>`.
    pub fn to_line(&self) -> String {
        format!("{PUBLIC_LABEL} {}", hex::encode(self.0))
    }

    /// Parses every key in a public-key or trusted-keys text (see the module docs).
    pub fn parse_text(text: &str) -> Result<Vec<PublicKey>, KeyError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let syntax = |what| KeyError::Syntax { line: i + 1, what };
            if parts.next() != Some(PUBLIC_LABEL) {
                return Err(syntax("expected `lineage-ed25519-public-v1 <hex>`"));
            }
            let hex_key = parts.next().ok_or_else(|| syntax("missing key"))?;
            let mut b = [0u8; 32];
            hex::decode_to_slice(hex_key, &mut b).map_err(|_| syntax("key is not 64 hex chars"))?;
            if VerifyingKey::from_bytes(&b).is_err() {
                return Err(syntax("not an Ed25519 public key"));
            }
            keys.push(PublicKey(b));
        }
        Ok(keys)
    }

    /// Parses one bare hex key or a key file's text holding exactly one key.
    pub fn parse_one(text: &str) -> Result<PublicKey, KeyError> {
        let t = text.trim();
        let mut b = [0u8; 32];
        if hex::decode_to_slice(t, &mut b).is_ok() {
            return Ok(PublicKey(b));
        }
        let keys = Self::parse_text(text)?;
        match keys.as_slice() {
            [k] => Ok(*k),
            _ => Err(KeyError::Syntax {
                line: 1,
                what: "expected exactly one public key",
            }),
        }
    }

    /// Loads every key of a public-key or trusted-keys file.
    pub fn load_file(path: &Path) -> Result<Vec<PublicKey>, KeyError> {
        let text = read_limited(path)?;
        Self::parse_text(&text)
    }

    /// Writes a public key file (mode 0644).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let line = format!("{}  key-id={}\n", self.to_line(), self.key_id());
        write_new(path, line.as_bytes(), 0o644)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// An Ed25519 signing key. Debug output never shows the secret.
pub struct SecretKey {
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public={})", self.public())
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        SecretKey {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// A key from a 32-byte seed (tests and test vectors use fixed seeds).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// Signs `msg` (deterministic, RFC 8032).
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(msg).to_bytes()
    }

    /// Writes the key to a new file created with mode 0600 (fails if the file exists).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let line = format!("{SECRET_LABEL} {}\n", hex::encode(self.key.to_bytes()));
        write_new(path, line.as_bytes(), 0o600)
    }

    /// Loads a secret key file, refusing it when group or others have any permission on it.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        let text = read_limited(path)?;
        Self::parse(&text)
    }

    /// Parses the text of a secret key file.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let syntax = |what| KeyError::Syntax { line: 1, what };
        let mut parts = text.split_whitespace();
        if parts.next() != Some(SECRET_LABEL) {
            return Err(syntax("expected `lineage-ed25519-secret-v1 <hex>`"));
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(
            parts.next().ok_or_else(|| syntax("missing key"))?,
            &mut seed,
        )
        .map_err(|_| syntax("key is not 64 hex chars"))?;
        if parts.next().is_some() {
            return Err(syntax("trailing text"));
        }
        Ok(Self::from_seed(seed))
    }
}

/// Whether the 255-bit `y` of an Edwards point encoding is below p = 2^255 - 19. The only
/// non-canonical values are p..2^255-1: low byte ≥ 0xed, then all ones.
fn is_canonical_point_encoding(b: &[u8; 32]) -> bool {
    let all_ones = b[1..31].iter().all(|&x| x == 0xff) && b[31] & 0x7f == 0x7f;
    !(all_ones && b[0] >= 0xed)
}

fn read_limited(path: &Path) -> Result<String, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let len = fs::metadata(path).map_err(io)?.len();
    if len > MAX_KEY_FILE_LEN {
        return Err(KeyError::TooLarge(path.to_owned()));
    }
    let bytes = fs::read(path).map_err(io)?;
    String::from_utf8(bytes).map_err(|_| KeyError::Syntax {
        line: 1,
        what: "not UTF-8",
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    // The umask may have removed bits but never adds any; set the mode exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_key_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let k = SecretKey::generate();
        k.save(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(SecretKey::load(&p).unwrap().public(), k.public());
        // Refuses to overwrite.
        assert!(k.save(&p).is_err());
    }

    #[test]
    fn refuses_group_or_world_readable_secret() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        SecretKey::from_seed([9; 32]).save(&p).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o601] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            assert!(matches!(
                SecretKey::load(&p),
                Err(KeyError::InsecurePermissions { .. })
            ));
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(SecretKey::load(&p).is_ok());
    }

    #[test]
    fn public_key_text() {
        let a = SecretKey::from_seed([1; 32]).public();
        let b = SecretKey::from_seed([2; 32]).public();
        let text = format!("# trusted\n\n{}  host-a\n{}\n", a.to_line(), b.to_line());
        assert_eq!(PublicKey::parse_text(&text).unwrap(), vec![a, b]);
        assert_eq!(PublicKey::parse_one(&a.to_string()).unwrap(), a);
        assert_eq!(PublicKey::parse_one(&a.to_line()).unwrap(), a);
        assert!(PublicKey::parse_one(&text).is_err());
        assert!(PublicKey::parse_text("lineage-ed25519-public-v1 abcd").is_err());
        assert!(PublicKey::parse_text("ssh-ed25519 AAAA").is_err());
    }

    #[test]
    fn key_id_and_signatures() {
        let k = SecretKey::from_seed([1; 32]);
        let pk = k.public();
        assert_ne!(pk.key_id(), SecretKey::from_seed([2; 32]).public().key_id());
        let sig = k.sign(b"m");
        assert!(pk.verify(b"m", &sig));
        assert!(!pk.verify(b"n", &sig));
        assert!(!PublicKey::from_bytes([0; 32]).verify(b"m", &sig));
    }

    /// The small-order forgery a lax verifier accepts for every message: A = R = identity,
    /// S = 0 ([0]B = R + [k]A holds trivially). Also S + L (non-canonical) for a real key.
    #[test]
    fn strict_verification_refuses_small_order_and_non_canonical() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity);
        assert!(!PublicKey::from_bytes(identity).verify(b"anything", &sig));
        // Non-canonical encoding of the identity (y = p + 1).
        let mut y_p1 = [0xffu8; 32];
        y_p1[0] = 0xee;
        y_p1[31] = 0x7f;
        assert!(!is_canonical_point_encoding(&y_p1));
        assert!(!PublicKey::from_bytes(y_p1).verify(b"anything", &sig));
        assert!(is_canonical_point_encoding(&identity));

        let k = SecretKey::from_seed([1; 32]);
        let good = k.sign(b"m");
        assert!(k.public().verify(b"m", &good));
        // S + L: the same signature with a non-canonical scalar.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut bad = good;
        let mut carry = 0u16;
        for i in 0..32 {
            let v = bad[32 + i] as u16 + L[i] as u16 + carry;
            bad[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert!(!k.public().verify(b"m", &bad));
    }
}
