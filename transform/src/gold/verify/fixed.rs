//! Exact fixed-point arithmetic: every PostgreSQL `numeric` of a mart is an integer of
//! units of 10^-scale (cents for money), and the rounding rules of the marts' SQL
//! (`round(x, k)` on numeric: half away from zero) are applied on integers, in polars
//! expressions where they are per row and in `i128` where polars has no exact operation
//! (the square root of the standard deviation).

use polars::prelude::*;

/// Parses a numeric as PostgreSQL prints it (`-12.340`, `17`) into its digits and its
/// scale, trailing fractional zeros dropped (`17.00` is `(17, 0)`).
pub fn parse(s: &str) -> Option<(i128, u32)> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    let mut m: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        m = m.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    Some((if neg { -m } else { m }, frac.len() as u32))
}

/// `v` units of 10^-scale as a decimal (`format(1230, 2)` is `12.30`).
pub fn format(v: i64, scale: u32) -> String {
    if scale == 0 {
        return v.to_string();
    }
    let p = 10u64.pow(scale);
    let a = v.unsigned_abs();
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{}.{:0w$}", a / p, a % p, w = scale as usize)
}

/// `n / d` rounded half away from zero, as PostgreSQL's `round(numeric)`; None for d = 0.
pub fn div_round(n: i128, d: i128) -> Option<i128> {
    if d == 0 {
        return None;
    }
    let (an, ad) = (n.unsigned_abs(), d.unsigned_abs());
    let q = (2 * an + ad) / (2 * ad);
    let q = q as i128;
    Some(if (n < 0) != (d < 0) { -q } else { q })
}

/// [`div_round`] as a polars expression on Int64 columns: null when `den` is null or 0.
pub fn div_round_expr(num: Expr, den: Expr) -> Expr {
    let abs = |e: Expr| {
        when(e.clone().lt(lit(0i64)))
            .then(lit(0i64) - e.clone())
            .otherwise(e)
    };
    let (an, ad) = (abs(num.clone()), abs(den.clone()));
    let q = (an * lit(2i64) + ad.clone()).floor_div(ad * lit(2i64));
    let negative = num.lt(lit(0i64)).neq(den.clone().lt(lit(0i64)));
    when(den.eq(lit(0i64)))
        .then(lit(NULL).cast(DataType::Int64))
        .otherwise(when(negative).then(lit(0i64) - q.clone()).otherwise(q))
}

/// Growth in percent with 2 decimals, in hundredths: `round(100 * (r / prev - 1), 2)`
/// (null when prev is null or 0).
pub fn growth_pct(r: Expr, prev: Expr) -> Expr {
    div_round_expr((r - prev.clone()) * lit(10_000i64), prev)
}

/// `round(sqrt(num · k / den))` half away from zero, exact (num >= 0, den > 0, k > 0),
/// without forming num · k (which may not fit).
pub fn sqrt_round(num: i128, den: i128, k: i128) -> Option<i128> {
    if num < 0 || den <= 0 || k <= 0 {
        return None;
    }
    // round(sqrt(x)) = floor((floor(sqrt(4x)) + 1) / 2), floor(sqrt(y)) = isqrt(floor(y)),
    // floor(4kq + 4kr/den) = 4kq + floor(4kr/den) for num = q·den + r.
    let (q, r) = (num / den, num % den);
    let four_k = k.checked_mul(4)?;
    let four_x = four_k
        .checked_mul(q)?
        .checked_add(four_k.checked_mul(r)? / den)?;
    Some((four_x.isqrt() + 1) / 2)
}

/// Sample standard deviation of amounts in cents, in millionths rounded half away from
/// zero (`round(stddev_samp(amount), 6)`), from n, the sum and the sum of squares.
pub fn stddev_micros(n: i64, sum: i128, sum_squares: i128) -> Option<i64> {
    if n < 2 {
        return None;
    }
    let n = i128::from(n);
    let num = n
        .checked_mul(sum_squares)?
        .checked_sub(sum.checked_mul(sum)?)?;
    // Variance in cents² = num / (n (n - 1)); the deviation in millionths of a unit is
    // sqrt(variance · 10^8).
    let v = sqrt_round(num, n * (n - 1), 100_000_000)?;
    i64::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_numerics() {
        assert_eq!(parse("17.00"), Some((17, 0)));
        assert_eq!(parse("-12.340"), Some((-1234, 2)));
        assert_eq!(parse("0.005"), Some((5, 3)));
        assert_eq!(parse("abc"), None);
        assert_eq!(format(1230, 2), "12.30");
        assert_eq!(format(-5, 2), "-0.05");
        assert_eq!(format(42, 0), "42");
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(div_round(5, 2), Some(3));
        assert_eq!(div_round(-5, 2), Some(-3));
        assert_eq!(div_round(5, -2), Some(-3));
        assert_eq!(div_round(12, 5), Some(2));
        assert_eq!(div_round(13, 5), Some(3));
        assert_eq!(div_round(1, 0), None);
        let df =
            df!("n" => [5i64, -5, 5, 12, 1001, 1, -7], "d" => [2i64, 2, -2, 5, 2, 0, 3]).unwrap();
        let out = df
            .lazy()
            .select([div_round_expr(col("n"), col("d")).alias("q")])
            .collect()
            .unwrap();
        let q: Vec<Option<i64>> = out.column("q").unwrap().i64().unwrap().iter().collect();
        assert_eq!(
            q,
            [
                Some(3),
                Some(-3),
                Some(-3),
                Some(2),
                Some(501),
                None,
                Some(-2)
            ]
        );
    }

    #[test]
    fn growth_in_hundredths_of_a_percent() {
        // 150 against 120: +25.00 %; 100 against 300: -66.666… → -66.67; 0.01 against 0.03.
        let df = df!("r" => [15000i64, 10000, 1], "p" => [12000i64, 30000, 3]).unwrap();
        let out = df
            .lazy()
            .select([growth_pct(col("r"), col("p")).alias("g")])
            .collect()
            .unwrap();
        let g: Vec<Option<i64>> = out.column("g").unwrap().i64().unwrap().iter().collect();
        assert_eq!(g, [Some(2500), Some(-6667), Some(-6667)]);
    }

    #[test]
    fn exact_standard_deviation() {
        // 1, 2, 3, 10: variance 50/3, deviation 4.0824829… → 4.082483.
        let cents = [100i128, 200, 300, 1000];
        let sum: i128 = cents.iter().sum();
        let sq: i128 = cents.iter().map(|c| c * c).sum();
        assert_eq!(stddev_micros(4, sum, sq), Some(4_082_483));
        assert_eq!(stddev_micros(1, 100, 10_000), None);
        assert_eq!(stddev_micros(2, 200, 20_000), Some(0));
        // 0 and 1 cent: sqrt(0.00005) = 0.0070710… → 0.007071.
        assert_eq!(stddev_micros(2, 1, 1), Some(7071));
        assert_eq!(sqrt_round(9, 4, 1), Some(2)); // sqrt(2.25) = 1.5 → 2
        assert_eq!(sqrt_round(8, 4, 1), Some(1)); // sqrt(2) = 1.41
    }
}
