//! Exit codes, ranked: a script can tell "altered" from "incomplete" from "lossy but honest".

use lineage_evidence::Outcome;

/// Everything checked out.
pub const OK: i32 = 0;
/// Integrity failure: something was altered, forged, re-signed, reordered or replayed.
pub const INTEGRITY: i32 = 1;
/// Completeness failure: segments or the tail are missing, or a gap is unexplained.
pub const COMPLETENESS: i32 = 2;
/// Only losses the agent declared and the kernel's counters explain.
pub const DECLARED_LOSS: i32 = 3;
/// Bad usage, unreadable input, or any other error that prevented a verdict.
pub const USAGE: i32 = 4;

/// The exit code for a verification outcome.
pub fn for_outcome(o: Outcome) -> i32 {
    match o {
        Outcome::Ok => OK,
        Outcome::IntegrityFailure => INTEGRITY,
        Outcome::CompletenessFailure => COMPLETENESS,
        Outcome::DeclaredLossOnly => DECLARED_LOSS,
    }
}
