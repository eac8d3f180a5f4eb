//! Removes zero-length DATA frames from request and response streams before h3 parses them.
//!
//! RFC 9114 §7.2.1 puts no minimum on a DATA frame's length, and an empty one carries nothing.
//! h3 0.0.8, however, reads an empty DATA frame as the end of the body and then treats the next
//! DATA frame as H3_FRAME_UNEXPECTED — a connection error that ends every call on the connection
//! (found by the independent aioquic peer in `client/tests/independent_peers.rs`). Dropping empty
//! DATA frames from the byte stream is transparent to the message and avoids it.
//!
//! Not reported upstream (hyperium/h3) as of 2026-12-07. Remove this filter when a released h3
//! reads an empty DATA frame as an empty piece of the body; the aioquic peer test above covers it.
//!
//! Frames are `type (varint) · length (varint) · payload` (RFC 9114 §7.1, varints RFC 9000 §16).
//! Output is sliced from the input chunks (no copy), except for a frame header split across two
//! chunks, whose few bytes are copied once.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// HTTP/3 DATA frame type (RFC 9114 §7.2.1).
const DATA: u64 = 0x00;

#[derive(Debug, Default)]
pub(crate) struct EmptyDataFilter {
    /// Payload bytes still to pass through for the current frame.
    payload_left: u64,
    /// Bytes of a frame header that ended a chunk before the header was complete.
    partial: BytesMut,
    /// Filtered pieces ready for h3.
    ready: VecDeque<Bytes>,
}

/// Decodes a QUIC varint at the start of `buf`: `(value, length)`, or `None` if incomplete.
fn varint(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len)?;
    let mut value = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        value = (value << 8) | u64::from(*b);
    }
    Some((value, len))
}

/// `(type, payload length, header length)` of the frame header at the start of `buf`.
fn frame_header(buf: &[u8]) -> Option<(u64, u64, usize)> {
    let (ty, a) = varint(buf)?;
    let (len, b) = varint(&buf[a..])?;
    Some((ty, len, a + b))
}

impl EmptyDataFilter {
    /// The next filtered piece, if any is ready.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        self.ready.pop_front()
    }

    /// The stream ended: whatever is left (a truncated header) goes to h3, which reports it.
    pub(crate) fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.ready.push_back(self.partial.split().freeze());
        }
    }

    /// Filters one chunk: returns it unchanged when it holds no empty DATA frame and ends on a
    /// complete frame header (the common case — no queueing), else queues the filtered pieces
    /// for [`pop`](Self::pop) and returns `None`.
    pub(crate) fn pass(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.ready.is_empty() && self.partial.is_empty() && self.scan_clean(&chunk) {
            return Some(chunk);
        }
        self.push(chunk);
        None
    }

    /// Advances the frame state over `chunk` if it can pass unchanged; leaves the state as it
    /// was and returns false otherwise.
    fn scan_clean(&mut self, chunk: &[u8]) -> bool {
        let mut payload_left = self.payload_left;
        let mut pos = 0;
        while pos < chunk.len() {
            if payload_left > 0 {
                let take =
                    (chunk.len() - pos).min(usize::try_from(payload_left).unwrap_or(usize::MAX));
                pos += take;
                payload_left -= take as u64;
                continue;
            }
            match frame_header(&chunk[pos..]) {
                Some((ty, len, header_len)) if !(ty == DATA && len == 0) => {
                    pos += header_len;
                    payload_left = len;
                }
                _ => return false,
            }
        }
        self.payload_left = payload_left;
        true
    }

    /// Filters one chunk read from the stream, queueing the pieces for [`pop`](Self::pop).
    pub(crate) fn push(&mut self, chunk: Bytes) {
        let mut pos = 0;
        // Start of the run of bytes to pass through unchanged.
        let mut run = 0;
        while pos < chunk.len() {
            if self.payload_left > 0 {
                let take = (chunk.len() - pos)
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                pos += take;
                self.payload_left -= take as u64;
                continue;
            }
            if !self.partial.is_empty() {
                // Complete a header split across chunks, one byte at a time (at most 16 bytes).
                self.partial.extend_from_slice(&chunk[pos..pos + 1]);
                pos += 1;
                run = pos;
                if let Some((ty, len, _)) = frame_header(&self.partial) {
                    let header = self.partial.split().freeze();
                    if !(ty == DATA && len == 0) {
                        self.ready.push_back(header);
                        self.payload_left = len;
                    }
                }
                continue;
            }
            match frame_header(&chunk[pos..]) {
                Some((ty, len, header_len)) => {
                    if ty == DATA && len == 0 {
                        if run < pos {
                            self.ready.push_back(chunk.slice(run..pos));
                        }
                        pos += header_len;
                        run = pos;
                    } else {
                        pos += header_len;
                        self.payload_left = len;
                    }
                }
                None => {
                    // The header continues in the next chunk: hold it back until complete.
                    if run < pos {
                        self.ready.push_back(chunk.slice(run..pos));
                    }
                    self.partial.extend_from_slice(&chunk[pos..]);
                    pos = chunk.len();
                    run = pos;
                }
            }
        }
        if run < chunk.len() {
            self.ready.push_back(chunk.slice(run..));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frame(ty: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![ty];
        // 2-byte varint length, to exercise multi-byte headers.
        v.push(0x40 | (payload.len() >> 8) as u8);
        v.push(payload.len() as u8);
        v.extend_from_slice(payload);
        v
    }

    fn run(input: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut f = EmptyDataFilter::default();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            // Exactly as the stream uses it: passed through whole when clean, else queued.
            if let Some(whole) = f.pass(Bytes::copy_from_slice(&input[last..c])) {
                out.extend_from_slice(&whole);
            }
            while let Some(b) = f.pop() {
                out.extend_from_slice(&b);
            }
            last = c;
        }
        f.finish();
        while let Some(b) = f.pop() {
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn clean_chunks_pass_whole() {
        let mut f = EmptyDataFilter::default();
        let chunk = Bytes::from([frame(0x01, b"hdrs"), frame(0x00, b"payload")].concat());
        assert_eq!(f.pass(chunk.clone()), Some(chunk));
        assert!(f.pop().is_none());
    }

    #[test]
    fn drops_only_empty_data_frames_wherever_chunks_split() {
        let headers = frame(0x01, b"hdrs");
        let data = frame(0x00, &[0u8; 300]);
        let empty = frame(0x00, b"");
        let reserved = frame(0x21, b""); // an empty frame of another type stays
        let trailers = frame(0x01, b"trl");
        let input = [
            headers.clone(),
            empty.clone(),
            data.clone(),
            empty.clone(),
            empty.clone(),
            reserved.clone(),
            trailers.clone(),
        ]
        .concat();
        let expected = [headers, data, reserved, trailers].concat();
        assert_eq!(run(&input, &[]), expected);
        for a in 0..input.len() {
            assert_eq!(run(&input, &[a]), expected, "cut at {a}");
            for b in a..input.len() {
                assert_eq!(run(&input, &[a, b]), expected, "cuts at {a}, {b}");
            }
        }
    }

    #[test]
    fn passes_a_truncated_header_through_for_h3_to_report() {
        assert_eq!(run(&[0x00], &[]), vec![0x00]);
        assert_eq!(run(&[0x00, 0x40], &[1]), vec![0x00, 0x40]);
    }

    #[test]
    fn decodes_every_varint_length() {
        assert_eq!(varint(&[0x25]), Some((0x25, 1)));
        assert_eq!(varint(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(varint(&[0x9d, 0x7f, 0x3e, 0x7d]), Some((494_878_333, 4)));
        assert_eq!(
            varint(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]),
            Some((151_288_809_941_952_652, 8))
        );
        assert_eq!(varint(&[0xc2, 0x19]), None);
    }
}
