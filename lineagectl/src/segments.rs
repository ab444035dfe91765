//! `lineagectl segments`: the sealed segments an agent holds, as a table or JSON lines.

use std::io;

use lineage_proto::v1::{ListSegmentsRequest, SegmentSummary};
use serde_json::json;

use crate::cli::SegmentsArgs;
use crate::clock;
use crate::connect::{self, ConnectError, RpcError};
use crate::exit;

/// Wall-clock times before this (2001-09-09) cannot be a seal time: the value is a boot-clock
/// reading (agents up to now stamp seals with `CLOCK_BOOTTIME`, not the wall clock that
/// docs/FORMAT.md specifies), shown as such.
const PLAUSIBLE_WALL_NS: u64 = 1_000_000_000_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum SegmentsError {
    #[error("--from {from} is after --to {to}")]
    Range { from: u64, to: u64 },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("starting the async runtime: {0}")]
    Runtime(io::Error),
}

pub fn run(a: &SegmentsArgs) -> Result<i32, SegmentsError> {
    let to = a.to.unwrap_or(u64::MAX);
    if a.from > to {
        return Err(SegmentsError::Range { from: a.from, to });
    }
    let list = connect::runtime()
        .map_err(SegmentsError::Runtime)?
        .block_on(async {
            let (mut client, target) = connect::connect(&a.conn).await?;
            // The agent answers in pages; `more` says where the next one starts.
            let mut all = Vec::new();
            let mut from = a.from;
            loop {
                let page = client
                    .list_segments(ListSegmentsRequest {
                        from,
                        to: a.to,
                        limit: 0,
                    })
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| SegmentsError::from(RpcError::new("ListSegments", &target, s)))?;
                let next = page.segments.last().map(|s| s.number + 1);
                all.extend(page.segments);
                match next {
                    Some(n) if page.more => from = n,
                    _ => break Ok::<_, SegmentsError>(all),
                }
            }
        })?;
    let list: Vec<SegmentSummary> = list
        .into_iter()
        .filter(|s| s.number >= a.from && s.number <= to)
        .collect();
    if a.json {
        for s in &list {
            println!("{}", to_json(s));
        }
    } else {
        for l in table(&list) {
            println!("{l}");
        }
    }
    Ok(exit::OK)
}

pub fn seal_time(ns: u64) -> String {
    if ns >= PLAUSIBLE_WALL_NS {
        clock::format_datetime(ns as i128)
    } else {
        format!("boot+{:.3}s", ns as f64 / 1e9)
    }
}

fn to_json(s: &SegmentSummary) -> serde_json::Value {
    json!({
        "number": s.number,
        "first_index": s.first_index,
        "entry_count": s.entry_count,
        "size": s.size,
        "seal_time_ns": s.seal_time_ns,
        "header_digest": hex::encode(&s.header_digest),
    })
}

pub fn table(list: &[SegmentSummary]) -> Vec<String> {
    let mut out = vec![format!(
        "{:>8}  {:>12}  {:>8}  {:>10}  {:<23}  DIGEST",
        "SEGMENT", "FIRST INDEX", "ENTRIES", "SIZE", "SEALED"
    )];
    for s in list {
        let digest = hex::encode(&s.header_digest);
        out.push(format!(
            "{:>8}  {:>12}  {:>8}  {:>10}  {:<23}  {}",
            s.number,
            s.first_index,
            s.entry_count,
            s.size,
            seal_time(s.seal_time_ns),
            &digest[..digest.len().min(16)]
        ));
    }
    if list.is_empty() {
        out.push("(no sealed segments in range)".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_row_per_segment() {
        let s = SegmentSummary {
            number: 7,
            first_index: 700,
            entry_count: 100,
            size: 4096,
            header_digest: vec![0xcd; 32],
            seal_time_ns: 12_500_000_000,
        };
        let t = table(std::slice::from_ref(&s));
        assert_eq!(t.len(), 2);
        assert!(t[1].contains("boot+12.500s"), "{t:#?}");
        assert!(t[1].ends_with(&"cd".repeat(8)), "{t:#?}");
        assert_eq!(to_json(&s)["header_digest"], "cd".repeat(32));
        assert!(table(&[])[1].contains("no sealed segments"));
        assert!(seal_time(1_700_000_000_000_000_000).starts_with("2023-11-1"));
    }
}
