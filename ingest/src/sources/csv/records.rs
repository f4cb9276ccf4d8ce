//! Splits a byte buffer into complete CSV records. A record counts only once its terminator
//! (outside quotes) has been read, so a half-written last line is never emitted.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

/// One complete record found in a buffer.
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// Offset of the record's first byte, relative to the buffer start.
    pub start: usize,
    /// The record's bytes, terminator excluded.
    pub raw: &'a [u8],
    /// Unquoted field values.
    pub fields: Vec<&'a [u8]>,
    /// Newlines before the record's first byte since the previous record (blank lines).
    pub newlines_before: u64,
    /// Newlines inside the record and its terminator.
    pub newlines: u64,
    /// Bytes consumed from `start`, terminator included.
    pub len: usize,
}

/// A record that exceeded the size limit without ending (an unbalanced quote, most likely).
#[derive(Debug)]
pub struct Oversized<'a> {
    pub start: usize,
    pub raw: &'a [u8],
    pub newlines_before: u64,
    pub newlines: u64,
}

pub enum Item<'a> {
    Record(RawRecord<'a>),
    Oversized(Oversized<'a>),
}

pub struct Splitter {
    /// Built once: building a csv_core reader is costly (its state machine tables).
    reader: Reader,
    max_record: usize,
    out: Vec<u8>,
    ends: Vec<usize>,
}

fn count_nl(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

impl Splitter {
    pub fn new(delimiter: u8, max_record: usize) -> Self {
        Splitter {
            reader: ReaderBuilder::new().delimiter(delimiter).build(),
            max_record,
            out: Vec::new(),
            ends: vec![0; 1024],
        }
    }

    /// Calls `f` for each complete record of `buf` and returns the number of bytes consumed
    /// (everything up to the end of the last complete record or skipped oversized one).
    /// Field slices borrow an internal buffer, so they live only for the call of `f`.
    pub fn split<F>(&mut self, buf: &[u8], mut f: F) -> usize
    where
        F: FnMut(Item<'_>),
    {
        let mut pos = 0usize;
        if self.out.len() < buf.len() {
            // Grows only: the buffer is reused across chunks.
            self.out.resize(buf.len(), 0);
        }
        loop {
            // Skip blank lines so that `start` is the record's first byte.
            let mut start = pos;
            while start < buf.len() && (buf[start] == b'\n' || buf[start] == b'\r') {
                start += 1;
            }
            if start >= buf.len() {
                return pos;
            }
            let newlines_before = count_nl(&buf[pos..start]);
            self.reader.reset();
            let input = &buf[start..];
            let (res, nin, _nout, nend) = loop {
                let r = self
                    .reader
                    .read_record(input, &mut self.out, &mut self.ends);
                if let (ReadRecordResult::OutputEndsFull, ..) = r {
                    if self.ends.len() >= 1 << 16 {
                        break r;
                    }
                    // Start again with room for more fields.
                    let n = self.ends.len() * 4;
                    self.ends.resize(n, 0);
                    self.reader.reset();
                    continue;
                }
                break r;
            };
            match res {
                ReadRecordResult::Record => {
                    // A CRLF terminator: take its LF with the record.
                    let nin =
                        if nin > 0 && input[nin - 1] == b'\r' && input.get(nin) == Some(&b'\n') {
                            nin + 1
                        } else {
                            nin
                        };
                    let consumed = &input[..nin];
                    let mut raw_end = nin;
                    while raw_end > 0
                        && (consumed[raw_end - 1] == b'\n' || consumed[raw_end - 1] == b'\r')
                    {
                        raw_end -= 1;
                    }
                    let mut fields = Vec::with_capacity(nend);
                    let mut prev = 0;
                    for &e in &self.ends[..nend] {
                        fields.push(&self.out[prev..e]);
                        prev = e;
                    }
                    f(Item::Record(RawRecord {
                        start,
                        raw: &input[..raw_end],
                        fields,
                        newlines_before,
                        newlines: count_nl(consumed),
                        len: nin,
                    }));
                    pos = start + nin;
                }
                ReadRecordResult::InputEmpty | ReadRecordResult::End => {
                    // Incomplete record: wait for more bytes, unless it is already too long.
                    if input.len() > self.max_record {
                        let cut = input
                            .iter()
                            .position(|&c| c == b'\n')
                            .map(|i| i + 1)
                            .unwrap_or(input.len());
                        let mut raw_end = cut;
                        while raw_end > 0
                            && (input[raw_end - 1] == b'\n' || input[raw_end - 1] == b'\r')
                        {
                            raw_end -= 1;
                        }
                        f(Item::Oversized(Oversized {
                            start,
                            raw: &input[..raw_end],
                            newlines_before,
                            newlines: count_nl(&input[..cut]),
                        }));
                        pos = start + cut;
                        continue;
                    }
                    return pos;
                }
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {
                    // More than 65536 fields: reject up to the next newline.
                    let cut = input
                        .iter()
                        .position(|&c| c == b'\n')
                        .map(|i| i + 1)
                        .unwrap_or(input.len());
                    if cut == input.len() && input.last() != Some(&b'\n') {
                        return pos;
                    }
                    f(Item::Oversized(Oversized {
                        start,
                        raw: &input[..cut - 1],
                        newlines_before,
                        newlines: count_nl(&input[..cut]),
                    }));
                    pos = start + cut;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (start, raw text, fields, newlines) of each record.
    type Found = (usize, String, Vec<String>, u64);

    fn collect(buf: &[u8], max: usize) -> (Vec<Found>, usize) {
        let mut s = Splitter::new(b',', max);
        let mut v = Vec::new();
        let n = s.split(buf, |it| match it {
            Item::Record(r) => v.push((
                r.start,
                String::from_utf8_lossy(r.raw).into_owned(),
                r.fields
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
                r.newlines,
            )),
            Item::Oversized(o) => v.push((
                o.start,
                String::from_utf8_lossy(o.raw).into_owned(),
                vec!["<oversized>".into()],
                o.newlines,
            )),
        });
        (v, n)
    }

    #[test]
    fn complete_records_only() {
        let (v, n) = collect(b"a,b\n1,2\n3,", 1000);
        assert_eq!(v.len(), 2);
        assert_eq!(n, 8);
        assert_eq!(v[1].2, vec!["1", "2"]);
        // The last line has all its fields but no newline yet: not emitted.
        let (v, n) = collect(b"a,b\n1,2", 1000);
        assert_eq!((v.len(), n), (1, 4));
    }

    #[test]
    fn quoted_newlines_crlf_and_blank_lines() {
        let buf = b"id,text\r\n1,\"two\nlines\"\r\n\r\n2,\"say \"\"hi\"\"\"\r\n";
        let (v, n) = collect(buf, 1000);
        assert_eq!(n, buf.len());
        assert_eq!(v.len(), 3);
        assert_eq!(v[1].2, vec!["1", "two\nlines"]);
        assert_eq!(v[1].1, "1,\"two\nlines\"");
        assert_eq!(v[1].3, 2);
        assert_eq!(v[2].2, vec!["2", "say \"hi\""]);
        assert_eq!(&buf[v[2].0..v[2].0 + 1], b"2");
        // A quoted newline at the end of the buffer is not a record end.
        let (v, n) = collect(b"1,\"open\n", 1000);
        assert_eq!((v.len(), n), (0, 0));
    }

    #[test]
    fn unbalanced_quote_is_cut_at_the_limit() {
        let mut buf = b"1,\"never closed\n".to_vec();
        buf.extend(std::iter::repeat_n(b'x', 100));
        buf.extend(b"\n2,ok\n");
        let (v, n) = collect(&buf, 50);
        assert_eq!(v[0].2, vec!["<oversized>"]);
        assert_eq!(v[0].1, "1,\"never closed");
        assert!(n > 0);
    }
}
