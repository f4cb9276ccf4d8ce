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

pub fn count_nl(b: &[u8]) -> u64 {
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

/// How a file's bytes reach the splitter, decided from its first bytes and the entity's
/// `encoding`: a byte-order mark wins over the setting (a file saved by Excel as "Unicode
/// text" is UTF-16 whatever the entity says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// An ASCII-compatible encoding, split as it is; fields decoded with `enc` (`None`:
    /// UTF-8, strictly). `bom` bytes (a UTF-8 BOM) are skipped at the start.
    Direct {
        enc: Option<&'static encoding_rs::Encoding>,
        bom: u64,
    },
    /// UTF-16, transcoded to UTF-8 chunk by chunk before the splitter; every position is
    /// mapped back to the original file's bytes.
    Utf16 { big_endian: bool, bom: u64 },
}

impl Input {
    /// Sniffs the byte-order mark of `head` (the file's first bytes); without one the
    /// entity's configured encoding applies.
    pub fn sniff(head: &[u8], configured: Option<&'static encoding_rs::Encoding>) -> Input {
        use encoding_rs::{UTF_16BE, UTF_16LE};
        if head.starts_with(b"\xEF\xBB\xBF") {
            Input::Direct { enc: None, bom: 3 }
        } else if head.starts_with(b"\xFF\xFE") {
            Input::Utf16 {
                big_endian: false,
                bom: 2,
            }
        } else if head.starts_with(b"\xFE\xFF") {
            Input::Utf16 {
                big_endian: true,
                bom: 2,
            }
        } else if configured == Some(UTF_16LE) || configured == Some(UTF_16BE) {
            Input::Utf16 {
                big_endian: configured == Some(UTF_16BE),
                bom: 0,
            }
        } else {
            Input::Direct {
                enc: configured,
                bom: 0,
            }
        }
    }

    pub fn bom(&self) -> u64 {
        match self {
            Input::Direct { bom, .. } | Input::Utf16 { bom, .. } => *bom,
        }
    }

    /// The encoding the splitter's fields are in (`None`: UTF-8).
    pub fn field_encoding(&self) -> Option<&'static encoding_rs::Encoding> {
        match self {
            Input::Direct { enc, .. } => *enc,
            Input::Utf16 { .. } => None,
        }
    }
}

/// Transcodes UTF-16 bytes to UTF-8, appending to `text`; the position in `text` of each
/// U+FFFD written for an unpaired surrogate goes to `bad`. Returns the bytes of `orig`
/// decoded: unless `at_end` (nothing more will be read), an odd last byte and a high
/// surrogate whose pair is not read yet are left for the next chunk; with `at_end` they
/// become a U+FFFD too.
pub fn utf16_to_utf8(
    orig: &[u8],
    big_endian: bool,
    at_end: bool,
    text: &mut Vec<u8>,
    bad: &mut Vec<usize>,
) -> usize {
    let unit = |c: &[u8]| {
        if big_endian {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_le_bytes([c[0], c[1]])
        }
    };
    let mut n = orig.len() / 2 * 2;
    if !at_end && n >= 2 && (0xD800..0xDC00).contains(&unit(&orig[n - 2..n])) {
        n -= 2;
    }
    text.reserve(n / 2 * 3 / 2 + 4);
    let mut utf8 = [0u8; 4];
    for c in char::decode_utf16(orig[..n].chunks_exact(2).map(unit)) {
        let c = c.unwrap_or_else(|_| {
            bad.push(text.len());
            char::REPLACEMENT_CHARACTER
        });
        text.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
    if at_end && n < orig.len() {
        bad.push(text.len());
        text.extend_from_slice("\u{FFFD}".as_bytes());
        return orig.len();
    }
    n
}

/// Maps positions in the UTF-8 text made by [`utf16_to_utf8`] back to byte offsets in the
/// original: 2 bytes per UTF-16 code unit, so 2 per character of up to 3 UTF-8 bytes
/// (U+FFFD of an unpaired surrogate included) and 4 per character of 4 (a surrogate pair).
/// Positions must be asked in increasing order (records come in order); each step walks
/// only the text since the previous one.
pub struct Utf16Offsets<'a> {
    text: &'a [u8],
    pos: usize,
    orig: u64,
    /// Bytes of the original the text stands for: the last U+FFFD of an odd byte counts 1.
    orig_len: u64,
}

impl<'a> Utf16Offsets<'a> {
    pub fn new(text: &'a [u8], orig_len: u64) -> Self {
        Utf16Offsets {
            text,
            pos: 0,
            orig: 0,
            orig_len,
        }
    }

    /// Offset in the original of text position `p` (a character boundary), relative to the
    /// start of the transcoded bytes.
    pub fn orig(&mut self, p: usize) -> u64 {
        let p = p.min(self.text.len());
        if p < self.pos {
            self.pos = 0;
            self.orig = 0;
        }
        for &b in &self.text[self.pos..p] {
            if b & 0xC0 != 0x80 {
                self.orig += if b >= 0xF0 { 4 } else { 2 };
            }
        }
        self.pos = p;
        self.orig.min(self.orig_len)
    }
}

#[cfg(test)]
mod utf16_tests {
    use super::*;

    fn le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    #[test]
    fn bom_wins_over_the_setting() {
        use encoding_rs::{UTF_16BE, UTF_16LE, WINDOWS_1252};
        let w = Some(WINDOWS_1252);
        assert_eq!(
            Input::sniff(b"\xFF\xFEi\0d\0", w),
            Input::Utf16 {
                big_endian: false,
                bom: 2
            }
        );
        assert_eq!(
            Input::sniff(b"\xFE\xFF\0i", None),
            Input::Utf16 {
                big_endian: true,
                bom: 2
            }
        );
        assert_eq!(
            Input::sniff(b"\xEF\xBB\xBFid", w),
            Input::Direct { enc: None, bom: 3 }
        );
        assert_eq!(
            Input::sniff(b"i\0d\0", Some(UTF_16LE)),
            Input::Utf16 {
                big_endian: false,
                bom: 0
            }
        );
        assert_eq!(
            Input::sniff(b"\0i\0d", Some(UTF_16BE)),
            Input::Utf16 {
                big_endian: true,
                bom: 0
            }
        );
        assert_eq!(Input::sniff(b"id", w), Input::Direct { enc: w, bom: 0 });
    }

    #[test]
    fn transcodes_and_maps_offsets_back() {
        // "é" is one code unit (2 bytes), "😀" a surrogate pair (4 bytes).
        let src = "id,name\n1,Zoë\n2,😀x\n";
        let orig = le(src);
        let (mut text, mut bad) = (Vec::new(), Vec::new());
        let n = utf16_to_utf8(&orig, false, false, &mut text, &mut bad);
        assert_eq!(n, orig.len());
        assert_eq!(text, src.as_bytes());
        assert!(bad.is_empty());
        let mut m = Utf16Offsets::new(&text, n as u64);
        // Each record start maps to 2 × its UTF-16 index.
        for (i, _) in src.match_indices('\n') {
            let units = src[..i + 1].encode_utf16().count() as u64;
            assert_eq!(m.orig(i + 1), 2 * units, "after byte {i}");
        }
        assert_eq!(m.orig(text.len()), orig.len() as u64);
        // Asked again from an earlier position, it walks from the start.
        assert_eq!(m.orig(8), 16);
    }

    #[test]
    fn chunk_ends_and_unpaired_surrogates() {
        let orig = le("a😀");
        // Cut between the two halves of the pair: the high half waits for the next chunk.
        let (mut text, mut bad) = (Vec::new(), Vec::new());
        assert_eq!(
            utf16_to_utf8(&orig[..4], false, false, &mut text, &mut bad),
            2
        );
        assert_eq!(text, b"a");
        // An odd byte waits too.
        text.clear();
        assert_eq!(
            utf16_to_utf8(&orig[..3], false, false, &mut text, &mut bad),
            2
        );
        // At the end of the file they are invalid.
        text.clear();
        assert_eq!(
            utf16_to_utf8(&orig[..4], false, true, &mut text, &mut bad),
            4
        );
        assert_eq!(text, "a\u{FFFD}".as_bytes());
        assert_eq!(bad, [1]);
        // A low surrogate alone in the middle of a line.
        let mut orig = le("1,a");
        orig.extend(0xDC00u16.to_le_bytes());
        orig.extend(le("b\n"));
        let (mut text, mut bad) = (Vec::new(), Vec::new());
        assert_eq!(
            utf16_to_utf8(&orig, false, false, &mut text, &mut bad),
            orig.len()
        );
        assert_eq!(text, "1,a\u{FFFD}b\n".as_bytes());
        assert_eq!(bad, [3]);
        let mut m = Utf16Offsets::new(&text, orig.len() as u64);
        assert_eq!(m.orig(3), 6);
        assert_eq!(m.orig(6), 8);
        assert_eq!(m.orig(text.len()), orig.len() as u64);
        // Big-endian.
        let be: Vec<u8> = "é\n".encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        let (mut text, mut bad) = (Vec::new(), Vec::new());
        utf16_to_utf8(&be, true, false, &mut text, &mut bad);
        assert_eq!(text, "é\n".as_bytes());
    }
}
