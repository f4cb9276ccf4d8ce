//! Additive Holt-Winters (ETS A,A,A) for a seasonal series, e.g. daily revenue with a weekly
//! period `m = 7`, plus the seasonal-naive reference forecast, MASE and a hold-out backtest.
//!
//! Recursions (one-step forecast error `e_t = y_t − (ℓ_{t−1} + b_{t−1} + s_{t−m})`):
//!
//! ```text
//! ℓ_t = α(y_t − s_{t−m}) + (1−α)(ℓ_{t−1} + b_{t−1})
//! b_t = β(ℓ_t − ℓ_{t−1}) + (1−β)b_{t−1}
//! s_t = γ(y_t − ℓ_{t−1} − b_{t−1}) + (1−γ)s_{t−m}
//! ŷ_{T+h} = ℓ_T + h·b_T + s_{T+h−m(k+1)},  k = ⌊(h−1)/m⌋
//! ```
//!
//! The initial state comes from the first two seasons (level and trend from their means,
//! seasonal components from the detrended values, normalised to sum to zero); α, β, γ ∈ [0, 1]
//! minimise the in-sample sum of squared one-step errors, first on a coarse grid and then by a
//! deterministic pattern search around the best grid point.

use thiserror::Error;

/// Standard normal quantile for a two-sided 80 % interval.
pub const Z80: f64 = 1.2816;
/// Standard normal quantile for a two-sided 95 % interval.
pub const Z95: f64 = 1.96;

/// Coarse grid, per smoothing parameter, searched before the local refinement.
const GRID: [f64; 10] = [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95];
/// Initial step of the pattern search (half the grid spacing).
const INITIAL_STEP: f64 = 0.05;
/// The pattern search stops when its step falls below this.
const MIN_STEP: f64 = 1e-5;
/// Upper bound on objective evaluations during the refinement.
const MAX_REFINE_EVALS: usize = 5_000;

/// Why a forecast, an accuracy measure or a backtest could not be computed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ForecastError {
    /// Holt-Winters needs a seasonal period of at least 2 (seasonal naive at least 1).
    #[error("invalid seasonal period {0}")]
    InvalidPeriod(usize),
    /// The series is shorter than the method needs (two full seasons for Holt-Winters).
    #[error("series too short: {got} points, need at least {needed}")]
    TooShort {
        /// Points supplied.
        got: usize,
        /// Points required.
        needed: usize,
    },
    /// A value is NaN or infinite.
    #[error("non-finite value at index {0}")]
    NonFinite(usize),
    /// A forecast horizon or an accuracy comparison over zero points.
    #[error("horizon must be at least 1")]
    ZeroHorizon,
    /// Actual and forecast values of different lengths.
    #[error("{actual} actual values but {forecast} forecast values")]
    LengthMismatch {
        /// Number of actual values.
        actual: usize,
        /// Number of forecast values.
        forecast: usize,
    },
    /// The training series' in-sample seasonal-naive error is zero, so MASE is undefined.
    #[error("MASE undefined: the training series has zero seasonal-naive error")]
    ZeroScale,
}

/// A fitted additive Holt-Winters model: smoothing parameters and the final state.
#[derive(Debug, Clone, PartialEq)]
pub struct HoltWinters {
    /// Level smoothing parameter α.
    pub alpha: f64,
    /// Trend smoothing parameter β.
    pub beta: f64,
    /// Seasonal smoothing parameter γ.
    pub gamma: f64,
    /// Level ℓ_T at the last observation.
    pub level: f64,
    /// Trend b_T at the last observation.
    pub trend: f64,
    /// The last `m` seasonal components, in forecast order: `season[i]` applies to the
    /// steps `h` with `(h − 1) mod m == i`.
    pub season: Vec<f64>,
    /// In-sample sum of squared one-step errors.
    pub sse: f64,
    /// Residual standard deviation, `sqrt(sse / n)` (the maximum-likelihood estimate).
    pub sigma: f64,
    /// Number of observations the model was fitted on.
    pub n: usize,
}

/// One forecast step: the point forecast and its 80 % and 95 % prediction intervals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Point forecast.
    pub mean: f64,
    /// Lower bound of the 80 % interval.
    pub lo80: f64,
    /// Upper bound of the 80 % interval.
    pub hi80: f64,
    /// Lower bound of the 95 % interval.
    pub lo95: f64,
    /// Upper bound of the 95 % interval.
    pub hi95: f64,
}

/// Result of [`backtest`]: accuracy on the held-out tail, scaled as MASE.
#[derive(Debug, Clone, PartialEq)]
pub struct Backtest {
    /// Number of held-out points.
    pub horizon: usize,
    /// MASE of the Holt-Winters forecast.
    pub hw_mase: f64,
    /// MASE of the seasonal-naive forecast (the reference).
    pub naive_mase: f64,
}

impl Backtest {
    /// Whether Holt-Winters beat the seasonal-naive reference on the held-out points.
    pub fn beats_naive(&self) -> bool {
        self.hw_mase < self.naive_mase
    }
}

/// Model state during the recursions.
#[derive(Debug, Clone)]
struct State {
    level: f64,
    trend: f64,
    /// `season[i]` is the component last updated at a time `t` with `t mod m == i`
    /// (initially: the components of times `i − m`).
    season: Vec<f64>,
}

fn check_finite(y: &[f64]) -> Result<(), ForecastError> {
    match y.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(ForecastError::NonFinite(i)),
        None => Ok(()),
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Initial state at time −1 from the first two seasons (`y.len() >= 2m`, `m >= 2`).
fn initial_state(y: &[f64], m: usize) -> State {
    let mean1 = mean(&y[..m]);
    let mean2 = mean(&y[m..2 * m]);
    let trend = (mean2 - mean1) / m as f64;
    let centre = (m as f64 - 1.0) / 2.0;
    let line = |t: usize| mean1 + trend * (t as f64 - centre);
    let mut season: Vec<f64> = (0..m)
        .map(|i| ((y[i] - line(i)) + (y[i + m] - line(i + m))) / 2.0)
        .collect();
    let offset = mean(&season);
    season.iter_mut().for_each(|s| *s -= offset);
    State {
        level: line(0) - trend,
        trend,
        season,
    }
}

/// Runs the recursions over `y` from `init`; returns the final state and the SSE.
fn run(y: &[f64], init: &State, [alpha, beta, gamma]: [f64; 3]) -> (State, f64) {
    let mut st = init.clone();
    let m = st.season.len();
    let mut sse = 0.0;
    for (t, &yt) in y.iter().enumerate() {
        let i = t % m;
        let s_old = st.season[i];
        let base = st.level + st.trend;
        let e = yt - (base + s_old);
        sse += e * e;
        let level = alpha * (yt - s_old) + (1.0 - alpha) * base;
        st.trend = beta * (level - st.level) + (1.0 - beta) * st.trend;
        st.season[i] = gamma * (yt - base) + (1.0 - gamma) * s_old;
        st.level = level;
    }
    (st, sse)
}

/// Coarse grid search followed by a pattern search; returns the best parameters and SSE.
fn optimise(y: &[f64], init: &State) -> ([f64; 3], f64) {
    let objective = |p: [f64; 3]| {
        let sse = run(y, init, p).1;
        if sse.is_finite() {
            sse
        } else {
            f64::INFINITY
        }
    };
    let mut best = [GRID[0]; 3];
    let mut best_sse = f64::INFINITY;
    for &a in &GRID {
        for &b in &GRID {
            for &g in &GRID {
                let sse = objective([a, b, g]);
                if sse < best_sse {
                    best = [a, b, g];
                    best_sse = sse;
                }
            }
        }
    }
    let mut step = INITIAL_STEP;
    let mut evals = 0;
    while step >= MIN_STEP && evals < MAX_REFINE_EVALS {
        let mut improved = false;
        for axis in 0..3 {
            for dir in [1.0, -1.0] {
                let mut cand = best;
                cand[axis] = (cand[axis] + dir * step).clamp(0.0, 1.0);
                if cand == best {
                    continue;
                }
                evals += 1;
                let sse = objective(cand);
                if sse < best_sse {
                    best = cand;
                    best_sse = sse;
                    improved = true;
                }
            }
        }
        if !improved {
            step /= 2.0;
        }
    }
    (best, best_sse)
}

/// Fits an additive Holt-Winters model with seasonal period `m` to `y`.
///
/// Needs `m >= 2`, at least two full seasons (`2m` points) and finite values. Deterministic:
/// the same input always gives the same parameters.
pub fn fit(y: &[f64], m: usize) -> Result<HoltWinters, ForecastError> {
    if m < 2 {
        return Err(ForecastError::InvalidPeriod(m));
    }
    if y.len() < 2 * m {
        return Err(ForecastError::TooShort {
            got: y.len(),
            needed: 2 * m,
        });
    }
    check_finite(y)?;
    let init = initial_state(y, m);
    let (params, _) = optimise(y, &init);
    let (state, sse) = run(y, &init, params);
    let n = y.len();
    let season = (0..m).map(|i| state.season[(n + i) % m]).collect();
    Ok(HoltWinters {
        alpha: params[0],
        beta: params[1],
        gamma: params[2],
        level: state.level,
        trend: state.trend,
        season,
        sse,
        sigma: (sse / n as f64).sqrt(),
        n,
    })
}

impl HoltWinters {
    /// Fits a model; same as [`fit`].
    pub fn fit(y: &[f64], m: usize) -> Result<Self, ForecastError> {
        fit(y, m)
    }

    /// Seasonal period `m`.
    pub fn period(&self) -> usize {
        self.season.len()
    }

    /// Forecasts `h` steps ahead with prediction intervals.
    ///
    /// `σ_h = σ·sqrt(1 + Σ_{j=1}^{h−1} c_j²)` with `c_j = α(1 + jβ) + γ·[j mod m = 0]`, the
    /// ETS(A,A,A) forecast variance; bounds are `mean ± z·σ_h` with [`Z80`] and [`Z95`].
    pub fn forecast(&self, h: usize) -> Vec<Point> {
        let m = self.period().max(1);
        let mut sum_c2 = 0.0;
        let mut out = Vec::with_capacity(h);
        for step in 1..=h {
            if step > 1 {
                let j = step - 1;
                let seasonal = if j % m == 0 { self.gamma } else { 0.0 };
                let c = self.alpha * (1.0 + j as f64 * self.beta) + seasonal;
                sum_c2 += c * c;
            }
            let s = self.season.get((step - 1) % m).copied().unwrap_or(0.0);
            let mean = self.level + step as f64 * self.trend + s;
            let sd = self.sigma * (1.0 + sum_c2).sqrt();
            out.push(Point {
                mean,
                lo80: mean - Z80 * sd,
                hi80: mean + Z80 * sd,
                lo95: mean - Z95 * sd,
                hi95: mean + Z95 * sd,
            });
        }
        out
    }
}

/// Seasonal-naive forecast: `ŷ_{T+h} = y_{T+h−m(k+1)}`, `k = ⌊(h−1)/m⌋` (the value one
/// season before, repeated). Needs `m >= 1` and at least `m` points.
pub fn seasonal_naive(y: &[f64], m: usize, h: usize) -> Result<Vec<f64>, ForecastError> {
    if m == 0 {
        return Err(ForecastError::InvalidPeriod(m));
    }
    if y.len() < m {
        return Err(ForecastError::TooShort {
            got: y.len(),
            needed: m,
        });
    }
    let last_season = &y[y.len() - m..];
    Ok((0..h).map(|i| last_season[i % m]).collect())
}

/// Mean absolute scaled error: the mean absolute forecast error divided by the in-sample
/// mean absolute error of the seasonal-naive forecast on `train`
/// (`(1/(n−m)) Σ_{t=m}^{n−1} |y_t − y_{t−m}|`). Below 1 beats seasonal naive.
pub fn mase(
    actual: &[f64],
    forecast: &[f64],
    train: &[f64],
    m: usize,
) -> Result<f64, ForecastError> {
    if m == 0 {
        return Err(ForecastError::InvalidPeriod(m));
    }
    if actual.len() != forecast.len() {
        return Err(ForecastError::LengthMismatch {
            actual: actual.len(),
            forecast: forecast.len(),
        });
    }
    if actual.is_empty() {
        return Err(ForecastError::ZeroHorizon);
    }
    if train.len() <= m {
        return Err(ForecastError::TooShort {
            got: train.len(),
            needed: m + 1,
        });
    }
    check_finite(actual)?;
    check_finite(forecast)?;
    check_finite(train)?;
    let scale_terms: Vec<f64> = train.windows(m + 1).map(|w| (w[m] - w[0]).abs()).collect();
    let scale = mean(&scale_terms);
    if scale <= 0.0 {
        return Err(ForecastError::ZeroScale);
    }
    let errors: Vec<f64> = actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| (a - f).abs())
        .collect();
    Ok(mean(&errors) / scale)
}

/// Holds out the last `horizon` points of `y`, fits Holt-Winters on the rest and returns the
/// MASE of its forecast and of the seasonal-naive forecast on the held-out points.
///
/// Needs at least `2m + horizon` points.
pub fn backtest(y: &[f64], m: usize, horizon: usize) -> Result<Backtest, ForecastError> {
    if horizon == 0 {
        return Err(ForecastError::ZeroHorizon);
    }
    if m < 2 {
        return Err(ForecastError::InvalidPeriod(m));
    }
    let needed = 2 * m + horizon;
    if y.len() < needed {
        return Err(ForecastError::TooShort {
            got: y.len(),
            needed,
        });
    }
    let (train, test) = y.split_at(y.len() - horizon);
    let model = fit(train, m)?;
    let hw: Vec<f64> = model.forecast(horizon).iter().map(|p| p.mean).collect();
    let naive = seasonal_naive(train, m, horizon)?;
    Ok(Backtest {
        horizon,
        hw_mase: mase(test, &hw, train, m)?,
        naive_mase: mase(test, &naive, train, m)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATTERN: [f64; 7] = [20.0, -5.0, -10.0, -8.0, 0.0, 15.0, 30.0];

    /// Deterministic pseudo-random numbers in [-1, 1) (a 64-bit LCG).
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    /// Trend + weekly pattern + small deterministic noise.
    fn seasonal_series(n: usize, noise_amp: f64) -> Vec<f64> {
        let e = noise(n, 42);
        (0..n)
            .map(|t| 200.0 + 1.5 * t as f64 + PATTERN[t % 7] + noise_amp * e[t])
            .collect()
    }

    #[test]
    fn beats_seasonal_naive_on_trend_plus_season() {
        let y = seasonal_series(84, 3.0);
        let bt = backtest(&y, 7, 7).unwrap();
        assert!(bt.hw_mase < 1.0, "{bt:?}");
        assert!(bt.beats_naive(), "{bt:?}");
        assert_eq!(bt.horizon, 7);
    }

    #[test]
    fn exact_on_noise_free_series() {
        let y = seasonal_series(42, 0.0);
        let model = fit(&y, 7).unwrap();
        assert!(model.sse < 1e-12, "{model:?}");
        let truth = seasonal_series(42 + 14, 0.0);
        for (h, p) in model.forecast(14).iter().enumerate() {
            assert!((p.mean - truth[42 + h]).abs() < 1e-6, "h={} {p:?}", h + 1);
        }
    }

    #[test]
    fn too_short_series_is_an_error() {
        let y = seasonal_series(13, 1.0);
        assert_eq!(
            fit(&y, 7),
            Err(ForecastError::TooShort {
                got: 13,
                needed: 14
            })
        );
        assert!(fit(&seasonal_series(14, 1.0), 7).is_ok());
        assert_eq!(fit(&y, 1), Err(ForecastError::InvalidPeriod(1)));
        assert_eq!(
            backtest(&seasonal_series(20, 1.0), 7, 7),
            Err(ForecastError::TooShort {
                got: 20,
                needed: 21
            })
        );
        let mut bad = seasonal_series(21, 1.0);
        bad[5] = f64::NAN;
        assert_eq!(fit(&bad, 7), Err(ForecastError::NonFinite(5)));
    }

    #[test]
    fn intervals_nest_and_widen_with_horizon() {
        // A wandering level makes α (and so the interval growth) clearly positive.
        let e = noise(70, 7);
        let mut walk = 0.0;
        let y: Vec<f64> = (0..70)
            .map(|t| {
                walk += 4.0 * e[t];
                100.0 + walk + PATTERN[t % 7]
            })
            .collect();
        let model = fit(&y, 7).unwrap();
        assert!(model.sigma > 0.0 && model.alpha > 0.0, "{model:?}");
        let fc = model.forecast(21);
        assert_eq!(fc.len(), 21);
        let width = |p: &Point| p.hi95 - p.lo95;
        assert!((width(&fc[0]) - 2.0 * Z95 * model.sigma).abs() < 1e-9);
        for p in &fc {
            assert!(p.lo95 <= p.lo80 && p.lo80 <= p.mean, "{p:?}");
            assert!(p.mean <= p.hi80 && p.hi80 <= p.hi95, "{p:?}");
        }
        for pair in fc.windows(2) {
            assert!(width(&pair[1]) >= width(&pair[0]));
            assert!(pair[1].hi80 - pair[1].lo80 >= pair[0].hi80 - pair[0].lo80);
        }
        assert!(width(&fc[20]) > width(&fc[0]));
    }

    #[test]
    fn fit_is_deterministic() {
        let y = seasonal_series(56, 5.0);
        assert_eq!(fit(&y, 7).unwrap(), fit(&y, 7).unwrap());
    }

    #[test]
    fn seasonal_naive_repeats_last_season() {
        let y: Vec<f64> = (0..14).map(f64::from).collect();
        let fc = seasonal_naive(&y, 7, 10).unwrap();
        assert_eq!(
            fc,
            vec![7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 7.0, 8.0, 9.0]
        );
        assert!(seasonal_naive(&y[..6], 7, 1).is_err());
    }

    #[test]
    fn mase_hand_computed() {
        let train = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        // Seasonal (m = 2) in-sample differences are all 2; errors 1 and 2 → 1.5 / 2.
        let v = mase(&[7.0, 8.0], &[6.0, 10.0], &train, 2).unwrap();
        assert!((v - 0.75).abs() < 1e-12);
        assert_eq!(
            mase(&[1.0], &[1.0], &[3.0, 3.0, 3.0], 1),
            Err(ForecastError::ZeroScale)
        );
        assert_eq!(
            mase(&[1.0], &[1.0, 2.0], &train, 2),
            Err(ForecastError::LengthMismatch {
                actual: 1,
                forecast: 2
            })
        );
    }
}
