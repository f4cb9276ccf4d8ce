//! Robust anomaly scores: the modified z-score of Iglewicz and Hoaglin,
//! `M = 0.6745·(y − median)/MAD`, against a reference set of earlier values, flagged when
//! `|M| > threshold` (3.5 by default).
//!
//! Two reference sets:
//! * [`score_series`]: the trailing `window` points before `t` (the point itself excluded);
//! * [`score_series_seasonal`]: the values one, two, … `windows` periods earlier (the same
//!   weekday for daily data). Daily revenue is weekly-seasonal, so this is the default for
//!   days: [`score_daily`] (period 7, 8 weeks).
//!
//! **MAD floor.** A reference set with many equal values has MAD = 0, which would make every
//! deviation infinite. The MAD used is therefore `max(MAD, 1e-9, 1 % of |median|)`: a point is
//! never flagged for deviating by less than about `threshold / 0.6745 × 1 %` ≈ 5.2 % of the
//! median (at the default threshold), and the score stays finite.
//!
//! Non-finite values are left out of reference sets, and a non-finite point gets no score.

/// Default threshold on `|M|` (Iglewicz and Hoaglin's recommendation).
pub const DEFAULT_THRESHOLD: f64 = 3.5;
/// Default trailing window for [`score_series`] (four weeks of days).
pub const DEFAULT_WINDOW: usize = 28;
/// Seasonal period of daily data (a week).
pub const DAILY_PERIOD: usize = 7;
/// Default number of earlier seasons in the seasonal reference set (eight weeks).
pub const DEFAULT_SEASONAL_WINDOWS: usize = 8;

/// Consistency constant of the modified z-score (`Φ⁻¹(0.75)`).
const MAD_SCALE: f64 = 0.6745;
/// Absolute floor on the MAD.
const MAD_ABS_FLOOR: f64 = 1e-9;
/// Floor on the MAD relative to `|median|`.
const MAD_REL_FLOOR: f64 = 0.01;

/// The score of one point against its reference set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The expected value: the median of the reference set.
    pub expected: f64,
    /// The MAD used, after the floor (see the module documentation).
    pub mad: f64,
    /// The modified z-score `0.6745·(y − expected)/mad`; its sign says spike (+) or drop (−).
    pub score: f64,
    /// `|score| > threshold`.
    pub is_anomaly: bool,
}

impl Score {
    /// The band of values that would not be flagged at `threshold`:
    /// `expected ± threshold·mad/0.6745`.
    pub fn band(&self, threshold: f64) -> (f64, f64) {
        let half = threshold * self.mad / MAD_SCALE;
        (self.expected - half, self.expected + half)
    }
}

/// Median of a non-empty slice (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Scores `value` against `reference` (non-finite values ignored). `None` when `value` is not
/// finite or no finite reference value remains.
pub fn score_point(value: f64, reference: &[f64], threshold: f64) -> Option<Score> {
    if !value.is_finite() {
        return None;
    }
    let mut refs: Vec<f64> = reference
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if refs.is_empty() {
        return None;
    }
    let expected = median(&mut refs);
    let mut deviations: Vec<f64> = refs.iter().map(|v| (v - expected).abs()).collect();
    let mad = median(&mut deviations)
        .max(MAD_ABS_FLOOR)
        .max(MAD_REL_FLOOR * expected.abs());
    let score = MAD_SCALE * (value - expected) / mad;
    Some(Score {
        expected,
        mad,
        score,
        is_anomaly: score.abs() > threshold,
    })
}

/// Minimum number of finite reference values before a point is scored: half the window,
/// rounded up (at least 1).
fn min_history(window: usize) -> usize {
    window.div_ceil(2).max(1)
}

/// Scores every point of `y` against the `window` points before it (not including itself).
///
/// `None` while fewer than `⌈window/2⌉` finite values of history exist (and everywhere when
/// `window == 0`).
pub fn score_series(y: &[f64], window: usize, threshold: f64) -> Vec<Option<Score>> {
    if window == 0 {
        return vec![None; y.len()];
    }
    let needed = min_history(window);
    (0..y.len())
        .map(|t| {
            let reference = &y[t.saturating_sub(window)..t];
            if reference.iter().filter(|v| v.is_finite()).count() < needed {
                return None;
            }
            score_point(y[t], reference, threshold)
        })
        .collect()
}

/// Scores every point of `y` against the values at `t − period`, `t − 2·period`, …,
/// `t − windows·period` (the same weekday of the previous `windows` weeks for daily data).
///
/// `None` while fewer than `⌈windows/2⌉` finite seasonal values exist (and everywhere when
/// `period` or `windows` is 0).
pub fn score_series_seasonal(
    y: &[f64],
    period: usize,
    windows: usize,
    threshold: f64,
) -> Vec<Option<Score>> {
    if period == 0 || windows == 0 {
        return vec![None; y.len()];
    }
    let needed = min_history(windows);
    (0..y.len())
        .map(|t| {
            let reference: Vec<f64> = (1..=windows)
                .map_while(|k| t.checked_sub(k * period))
                .map(|i| y[i])
                .filter(|v| v.is_finite())
                .collect();
            if reference.len() < needed {
                return None;
            }
            score_point(y[t], &reference, threshold)
        })
        .collect()
}

/// The default for a daily series: same weekday over the previous 8 weeks, threshold 3.5.
pub fn score_daily(y: &[f64]) -> Vec<Option<Score>> {
    score_series_seasonal(y, DAILY_PERIOD, DEFAULT_SEASONAL_WINDOWS, DEFAULT_THRESHOLD)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEEKDAY: [f64; 7] = [0.0, -100.0, -80.0, -60.0, 50.0, 200.0, 300.0];

    /// Ten weeks of daily revenue: weekly pattern, a slight trend, small deterministic noise.
    fn weekly_series() -> Vec<f64> {
        (0..70)
            .map(|t| {
                let noise = ((t * 37 % 17) as f64 - 8.0) * 2.0;
                1000.0 + 0.5 * t as f64 + WEEKDAY[t % 7] + noise
            })
            .collect()
    }

    fn flagged(scores: &[Option<Score>]) -> Vec<usize> {
        scores
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some_and(|s| s.is_anomaly))
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn normal_weeks_flag_nothing() {
        let y = weekly_series();
        let scores = score_daily(&y);
        assert!(flagged(&scores).is_empty());
        // Four weeks of history are needed before scoring starts.
        assert!(scores[..28].iter().all(Option::is_none));
        assert!(scores[28..].iter().all(Option::is_some));
    }

    #[test]
    fn injected_spike_and_drop_are_found_at_their_index() {
        let mut y = weekly_series();
        y[53] *= 0.5; // drop
        y[60] += 400.0; // spike
        let scores = score_daily(&y);
        assert_eq!(flagged(&scores), vec![53, 60]);
        let drop = scores[53].unwrap();
        let spike = scores[60].unwrap();
        assert!(drop.score < -DEFAULT_THRESHOLD && spike.score > DEFAULT_THRESHOLD);
        // The expected value is the same weekday's median, not the spike.
        assert!((spike.expected - (y[60] - 400.0)).abs() < 50.0);
        let (lo, hi) = spike.band(DEFAULT_THRESHOLD);
        assert!(lo < spike.expected && spike.expected < hi && y[60] > hi);
    }

    #[test]
    fn trailing_window_excludes_the_point_itself() {
        let mut y: Vec<f64> = (0..40)
            .map(|t| 500.0 + ((t * 13 % 7) as f64 - 3.0))
            .collect();
        y[30] = 800.0;
        let scores = score_series(&y, 20, DEFAULT_THRESHOLD);
        assert_eq!(flagged(&scores), vec![30]);
        assert!(scores[..10].iter().all(Option::is_none));
        assert!(scores[10].is_some());
        // One spike in the window does not move the median much, so later points stay normal.
        assert!(scores[31].unwrap().expected < 510.0);
    }

    #[test]
    fn zero_mad_uses_the_floor() {
        let mut y = vec![100.0; 20];
        y[15] = 103.0; // 3 % off: within the 1 %-of-median band at 3.5
        y[18] = 110.0; // 10 % off: flagged
        let scores = score_series(&y, 10, DEFAULT_THRESHOLD);
        assert_eq!(flagged(&scores), vec![18]);
        let s = scores[15].unwrap();
        assert!((s.mad - 1.0).abs() < 1e-12 && s.score.is_finite());
        let zeros = score_series(&[0.0; 10], 4, DEFAULT_THRESHOLD);
        assert!(zeros
            .iter()
            .flatten()
            .all(|s| s.score == 0.0 && !s.is_anomaly));
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut y = weekly_series();
        y[40] = f64::NAN;
        let scores = score_daily(&y);
        assert!(scores[40].is_none());
        assert!(scores[47].is_some());
        assert!(flagged(&scores).is_empty());
        assert!(score_series_seasonal(&y, 0, 8, 3.5)
            .iter()
            .all(Option::is_none));
    }
}
