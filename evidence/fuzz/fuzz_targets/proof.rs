//! A proof file handed to `verify-proof`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lineage_evidence::{Proof, SecretKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Proof::parse(data) {
        let _ = p.verify(&p.header.public_key);
        let _ = p.verify(&SecretKey::from_seed([2; 32]).public());
    }
});
