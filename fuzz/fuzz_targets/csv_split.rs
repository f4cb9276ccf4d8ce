//! The CSV record splitter (`ingest/src/sources/csv/records.rs`) fed as the agent feeds it:
//! the unconsumed rest of the file plus the bytes read since, chunk after chunk.
//!
//! Input: byte 0 is the delimiter (an ASCII byte as it is, as the configuration allows any;
//! others pick `,`), byte 1 seeds the chunk sizes, byte 2 the size limit (`max_record`),
//! the rest is the file.
//!
//! Checked for every call (whole input or chunk by chunk):
//! * no panic;
//! * byte accounting: items in order, only `\r`/`\n` between them, `newlines_before` and
//!   `newlines` count exactly the `\n` they cover, `raw` is the record's bytes without its
//!   terminator, and the returned length ends at the last item;
//! * a record without any quote has its fields joined by the delimiter equal to `raw` (less
//!   a leading UTF-8 BOM and the blank lines after it, which csv_core skips at the start of
//!   every record);
//! * the unconsumed rest yields nothing when split again (no state across calls).
//!
//! With a limit above the input's length (no record can be oversized), splitting in one
//! chunk or in many gives the same records (absolute offset, raw bytes, fields); the
//! consumed lengths differ at most by the `\n` of a CRLF split across two chunks.
#![no_main]

use ingest::fuzzing::csv::{count_nl, Item, Splitter};
use libfuzzer_sys::fuzz_target;

/// One item, owned, with its offset from the start of the whole input.
#[derive(Debug, PartialEq)]
struct Found {
    start: usize,
    raw: Vec<u8>,
    /// `None`: oversized.
    fields: Option<Vec<Vec<u8>>>,
}

fn is_nl(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

fn trim_leading_nl(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if !is_nl(*first) {
            break;
        }
        b = rest;
    }
    b
}

fn trim_nl(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., last] = b {
        if !is_nl(*last) {
            break;
        }
        b = rest;
    }
    b
}

/// Splits `buf` once, checks the accounting of that call and returns its items (offsets
/// shifted by `base`) and the consumed length.
fn split_checked(s: &mut Splitter, delim: u8, buf: &[u8], base: usize) -> (Vec<Found>, usize) {
    let mut found = Vec::new();
    // End of the previous item (terminator included).
    let mut prev_end = 0usize;
    let consumed = s.split(buf, |item| {
        let (start, end, newlines_before, raw, fields) = match item {
            Item::Record(r) => {
                assert!(r.start + r.len <= buf.len());
                let whole = &buf[r.start..r.start + r.len];
                assert_eq!(
                    r.raw,
                    trim_nl(whole),
                    "raw is the record less its terminator"
                );
                assert!(r.len > r.raw.len(), "a record ends with its terminator");
                assert_eq!(r.newlines, count_nl(whole));
                assert!(!r.fields.is_empty());
                // csv_core skips a UTF-8 BOM at the start of its input, and the blank lines
                // after it, and the splitter restarts it at every record: a record starting
                // with U+FEFF has neither in its fields (they stay in `raw`).
                let body = r
                    .raw
                    .strip_prefix(b"\xEF\xBB\xBF")
                    .map_or(r.raw, trim_leading_nl);
                if !body.contains(&b'"') && !is_nl(delim) && delim != b'"' {
                    assert!(!body.iter().any(|&c| is_nl(c)));
                    assert_eq!(r.fields.join(&delim), body, "unquoted fields rebuild raw");
                }
                let fields = r.fields.iter().map(|f| f.to_vec()).collect();
                let end = r.start + r.len;
                (r.start, end, r.newlines_before, r.raw, Some(fields))
            }
            Item::Oversized(o) => {
                // Cut after its first newline, or at the end of the buffer.
                let cut = buf[o.start..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(buf.len(), |i| o.start + i + 1);
                assert_eq!(o.raw, trim_nl(&buf[o.start..cut]));
                assert_eq!(o.newlines, count_nl(&buf[o.start..cut]));
                (o.start, cut, o.newlines_before, o.raw, None)
            }
        };
        assert!(start >= prev_end && start < buf.len(), "items in order");
        // Between the previous item and this one: blank lines only, counted.
        let gap = &buf[prev_end..start];
        assert!(
            gap.iter().all(|&c| is_nl(c)),
            "only blank lines between items"
        );
        assert!(!is_nl(buf[start]), "an item starts at its first byte");
        assert_eq!(newlines_before, count_nl(gap));
        prev_end = end;
        found.push(Found {
            start: base + start,
            raw: raw.to_vec(),
            fields,
        });
    });
    assert_eq!(
        consumed, prev_end,
        "consumed up to the end of the last item"
    );
    (found, consumed)
}

/// Chunk sizes from a seed: 1..=4 bytes (high bit set) or 1..=64, varied.
fn chunk_sizes(seed: u8) -> impl FnMut() -> usize {
    let mut x = u32::from(seed) | 0x100;
    let small = seed & 0x80 != 0;
    move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        1 + (x as usize) % if small { 4 } else { 64 }
    }
}

fuzz_target!(|data: &[u8]| {
    let [d, seed, limit, ref file @ ..] = *data else {
        return;
    };
    let delim = if d.is_ascii() { d } else { b',' };
    // Above the input's length (records never oversized), or a small limit.
    let unbounded = limit & 1 == 0;
    let max_record = if unbounded {
        file.len() + 1
    } else {
        1 + usize::from(limit >> 1)
    };

    let (whole, whole_n) = split_checked(&mut Splitter::new(delim, max_record), delim, file, 0);
    let rest = &file[whole_n..];
    let (again, n) = split_checked(&mut Splitter::new(delim, max_record), delim, rest, 0);
    assert!(
        again.is_empty() && n == 0,
        "the rest yields nothing by itself"
    );

    // Chunk by chunk with one splitter, as the agent reads a growing file.
    let mut s = Splitter::new(delim, max_record);
    let mut next = chunk_sizes(seed);
    let (mut pending, mut base, mut at) = (Vec::new(), 0usize, 0usize);
    let mut chunked = Vec::new();
    while at < file.len() {
        let n = next().min(file.len() - at);
        pending.extend_from_slice(&file[at..at + n]);
        at += n;
        let (items, consumed) = split_checked(&mut s, delim, &pending, base);
        chunked.extend(items);
        pending.drain(..consumed);
        base += consumed;
    }
    if unbounded {
        assert!(
            chunked.iter().all(|f| f.fields.is_some()),
            "nothing oversized"
        );
        assert_eq!(chunked, whole, "one chunk or many: the same records");
        assert!(base <= whole_n && file[base..whole_n].iter().all(|&c| c == b'\n'));
    }
});
