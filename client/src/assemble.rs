//! `PullSegments` sends each segment file in chunks (≤ 1 MiB, so default gRPC clients can
//! receive any segment). This joins them back into the exact stored bytes and refuses
//! anything that is not one segment's chunks in order: a gap, an overlap, a chunk of another
//! segment before the current one is complete, or a size beyond what any agent writes.

use lineage_proto::v1::Segment;

/// Largest segment file accepted, so a hostile agent cannot make us allocate without bound.
/// The agent's largest configurable segment is far below this.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AssembleError {
    #[error("segment {number}: chunk at offset {got}, expected offset {expected}")]
    Gap {
        number: u64,
        expected: u64,
        got: u64,
    },
    #[error("segment {got} began before segment {current} was complete")]
    Interleaved { current: u64, got: u64 },
    #[error("segment {number}: chunk ends at {end}, past the announced size {size}")]
    Overrun { number: u64, end: u64, size: u64 },
    #[error("segment {number}: size changed from {was} to {now} between chunks")]
    SizeChanged { number: u64, was: u64, now: u64 },
    #[error("segment {number}: announced size {size} is over the {MAX_SEGMENT_BYTES}-byte limit")]
    TooLarge { number: u64, size: u64 },
    #[error("segment {number}: an empty chunk")]
    Empty { number: u64 },
}

/// Feeds on chunks; yields `(number, bytes)` for each completed segment.
#[derive(Debug, Default)]
pub struct SegmentAssembler {
    current: Option<(u64, u64, Vec<u8>)>,
}

impl SegmentAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a segment is partly received (the stream ending now would lose it).
    pub fn in_progress(&self) -> Option<u64> {
        self.current.as_ref().map(|(n, _, _)| *n)
    }

    pub fn push(&mut self, chunk: Segment) -> Result<Option<(u64, Vec<u8>)>, AssembleError> {
        let Segment {
            number,
            data,
            offset,
            size,
        } = chunk;
        if size > MAX_SEGMENT_BYTES {
            return Err(AssembleError::TooLarge { number, size });
        }
        if data.is_empty() && size != 0 {
            return Err(AssembleError::Empty { number });
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > size {
            return Err(AssembleError::Overrun { number, end, size });
        }
        match &self.current {
            Some((n, _, _)) if *n != number => {
                return Err(AssembleError::Interleaved {
                    current: *n,
                    got: number,
                })
            }
            Some((_, s, _)) if *s != size => {
                return Err(AssembleError::SizeChanged {
                    number,
                    was: *s,
                    now: size,
                })
            }
            Some(_) => {}
            None => self.current = Some((number, size, Vec::with_capacity(size as usize))),
        }
        let (cur_n, cur_size, buf) = self.current.as_mut().expect("set above");
        let (cur_n, cur_size) = (*cur_n, *cur_size);
        if offset != buf.len() as u64 {
            let expected = buf.len() as u64;
            self.current = None;
            return Err(AssembleError::Gap {
                number,
                expected,
                got: offset,
            });
        }
        buf.extend_from_slice(&data);
        if buf.len() as u64 == cur_size {
            let (_, _, bytes) = self.current.take().expect("current segment");
            return Ok(Some((cur_n, bytes)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(number: u64, offset: u64, data: &[u8], size: u64) -> Segment {
        Segment {
            number,
            data: data.to_vec(),
            offset,
            size,
        }
    }

    #[test]
    fn joins_chunks_in_order() {
        let mut a = SegmentAssembler::new();
        assert_eq!(a.push(chunk(3, 0, b"abc", 5)), Ok(None));
        assert_eq!(a.in_progress(), Some(3));
        assert_eq!(
            a.push(chunk(3, 3, b"de", 5)),
            Ok(Some((3, b"abcde".to_vec())))
        );
        assert_eq!(a.in_progress(), None);
        assert_eq!(a.push(chunk(4, 0, b"x", 1)), Ok(Some((4, b"x".to_vec()))));
    }

    #[test]
    fn refuses_what_is_not_one_segment_in_order() {
        let mut a = SegmentAssembler::new();
        a.push(chunk(3, 0, b"abc", 6)).unwrap();
        assert!(matches!(
            a.push(chunk(4, 0, b"x", 1)),
            Err(AssembleError::Interleaved { current: 3, got: 4 })
        ));
        assert!(matches!(
            a.push(chunk(3, 4, b"x", 6)),
            Err(AssembleError::Gap {
                expected: 3,
                got: 4,
                ..
            })
        ));
        let mut a = SegmentAssembler::new();
        assert!(matches!(
            a.push(chunk(1, 0, b"abc", 2)),
            Err(AssembleError::Overrun { .. })
        ));
        assert!(matches!(
            a.push(chunk(1, 0, b"", MAX_SEGMENT_BYTES + 1)),
            Err(AssembleError::TooLarge { .. })
        ));
        a.push(chunk(2, 0, b"ab", 4)).unwrap();
        assert!(matches!(
            a.push(chunk(2, 2, b"cd", 5)),
            Err(AssembleError::SizeChanged { .. })
        ));
    }
}
