//! The text parsers: public/trusted key files, secret key files, `--head` values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lineage_evidence::verify::KnownHead;
use lineage_evidence::{PublicKey, SecretKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = PublicKey::parse_text(s);
        let _ = PublicKey::parse_one(s);
        let _ = SecretKey::parse(s);
        if let Ok(h) = s.parse::<KnownHead>() {
            assert_eq!(h.to_string().parse::<KnownHead>().unwrap(), h);
        }
    }
});
