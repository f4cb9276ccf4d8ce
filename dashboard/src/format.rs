//! Number formatting shared by the server render and the browser.
//!
//! Amounts travel as decimal strings (exact, as PostgreSQL's `numeric` prints them) and are
//! formatted here without going through floating point.

/// Formats a decimal string with thousands separators and exactly `decimals` decimals,
/// rounding half away from zero: `"1234567.891"` → `"1,234,567.89"`.
///
/// Input that is not a plain decimal number is returned unchanged.
pub fn format_decimal(value: &str, decimals: usize) -> String {
    let trimmed = value.trim();
    let (negative, digits) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    let valid = !int_part.is_empty() || !frac_part.is_empty();
    if !valid
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return value.to_string();
    }

    // Work on the digits as one integer-like vector scaled by 10^decimals.
    let mut scaled: Vec<u8> = int_part.bytes().map(|b| b - b'0').collect();
    let frac: Vec<u8> = frac_part.bytes().map(|b| b - b'0').collect();
    for i in 0..decimals {
        scaled.push(frac.get(i).copied().unwrap_or(0));
    }
    if frac.get(decimals).is_some_and(|d| *d >= 5) {
        // Round up: propagate the carry.
        let mut i = scaled.len();
        loop {
            if i == 0 {
                scaled.insert(0, 1);
                break;
            }
            i -= 1;
            if scaled[i] == 9 {
                scaled[i] = 0;
            } else {
                scaled[i] += 1;
                break;
            }
        }
    }
    let split = scaled.len() - decimals;
    let (int_digits, frac_digits) = scaled.split_at(split);
    let int_digits: Vec<u8> = {
        let first_non_zero = int_digits.iter().position(|d| *d != 0);
        match first_non_zero {
            Some(p) => int_digits[p..].to_vec(),
            None => vec![0],
        }
    };

    let mut out = String::with_capacity(int_digits.len() + int_digits.len() / 3 + decimals + 2);
    let is_zero = int_digits == [0] && frac_digits.iter().all(|d| *d == 0);
    if negative && !is_zero {
        out.push('-');
    }
    for (i, d) in int_digits.iter().enumerate() {
        if i > 0 && (int_digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push((b'0' + d) as char);
    }
    if decimals > 0 {
        out.push('.');
        out.extend(frac_digits.iter().map(|d| (b'0' + d) as char));
    }
    out
}

/// Formats an integer count with thousands separators: `1234567` → `"1,234,567"`.
pub fn format_count(value: i64) -> String {
    format_decimal(&value.to_string(), 0)
}

/// Short label for an axis tick: `950` → `"950"`, `12_500` → `"12.5k"`, `3_000_000` → `"3M"`.
pub fn format_compact(value: f64) -> String {
    let abs = value.abs();
    let (scaled, suffix) = if abs >= 1e9 {
        (value / 1e9, "B")
    } else if abs >= 1e6 {
        (value / 1e6, "M")
    } else if abs >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let mut text = format!("{scaled:.1}");
    if text.ends_with(".0") {
        text.truncate(text.len() - 2);
    }
    format!("{text}{suffix}")
}

/// Percent-encoding for a URL query value or path segment (`/` kept).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A table cell as shown: exact decimals keep their digits, only grouped and padded.
pub fn format_cell(kind: crate::model::Kind, value: Option<&str>) -> String {
    use crate::model::Kind;
    let Some(v) = value else {
        return "–".to_string();
    };
    match kind {
        Kind::Money => format_decimal(v, 2),
        Kind::Count => format_decimal(v, 0),
        Kind::Pct => format!("{} %", format_decimal(v, 2)),
        Kind::Ratio => match v.parse::<f64>() {
            Ok(r) => format!("{:.1} %", r * 100.0),
            Err(_) => v.to_string(),
        },
        Kind::Text | Kind::Date | Kind::Number => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_and_two_decimals() {
        assert_eq!(format_decimal("1234567.891", 2), "1,234,567.89");
        assert_eq!(format_decimal("1234567.895", 2), "1,234,567.90");
        assert_eq!(format_decimal("999.995", 2), "1,000.00");
        assert_eq!(format_decimal("0", 2), "0.00");
        assert_eq!(format_decimal("12", 2), "12.00");
        assert_eq!(format_decimal("100000", 2), "100,000.00");
        assert_eq!(format_decimal("-1234.5", 2), "-1,234.50");
        assert_eq!(format_decimal("-0.001", 2), "0.00");
        assert_eq!(format_decimal(".5", 2), "0.50");
    }

    #[test]
    fn counts_and_garbage() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(1000), "1,000");
        assert_eq!(format_count(-1234567), "-1,234,567");
        assert_eq!(format_decimal("n/a", 2), "n/a");
        assert_eq!(format_decimal("1e5", 2), "1e5");
        assert_eq!(format_decimal("", 2), "");
    }

    #[test]
    fn compact_axis_labels() {
        assert_eq!(format_compact(0.0), "0");
        assert_eq!(format_compact(950.0), "950");
        assert_eq!(format_compact(12_500.0), "12.5k");
        assert_eq!(format_compact(3_000_000.0), "3M");
    }
}
