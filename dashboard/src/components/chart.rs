//! Daily revenue as an SVG area chart, drawn by hand (no charting library: nothing to ship
//! to the browser, and the server and the client render exactly the same markup), with the
//! forecast after the last day (point forecast and its 80 % and 95 % bands) and markers on
//! the anomalous days.

use leptos::prelude::*;

use crate::{
    format::format_compact,
    model::{AnomalyPoint, DailyPoint, ForecastPoint},
};

pub const WIDTH: f64 = 800.0;
pub const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// Everything needed to draw the chart, in SVG user units.
#[derive(Clone, Debug, PartialEq)]
pub struct ChartGeometry {
    /// `M x,y L x,y ...` through every point.
    pub line: String,
    /// The line closed down to the x axis.
    pub area: String,
    /// (y, label) for the horizontal grid lines.
    pub y_ticks: Vec<(f64, String)>,
    /// (x, label) for the date labels.
    pub x_ticks: Vec<(f64, String)>,
    /// The points themselves.
    pub points: Vec<(f64, f64)>,
    /// The point forecast, from the last observed day on.
    pub forecast: String,
    /// Closed polygons of the 80 % and 95 % bands.
    pub band80: String,
    pub band95: String,
    /// (x, y, text) of each anomalous day.
    pub markers: Vec<(f64, f64, String)>,
}

/// A closed polygon between `lo` and `hi` over the forecast days.
fn band(xs: &[f64], lo: &[f64], hi: &[f64]) -> String {
    if xs.is_empty() {
        return String::new();
    }
    let upper = xs.iter().zip(hi).map(|(x, y)| format!("{x},{y}"));
    let lower = xs.iter().zip(lo).rev().map(|(x, y)| format!("{x},{y}"));
    let pts: Vec<String> = upper.chain(lower).collect();
    format!("M{} Z", pts.join(" L"))
}

/// Rounds `max` up to 1, 2, 2.5 or 5 times a power of ten, so that ticks read well.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * magnitude)
}

/// Lays the points out over the plot area. `points`, `forecast` and `anomalies` must be
/// sorted by day; the x axis runs from the first point to the last forecast day.
pub fn chart_geometry(
    points: &[DailyPoint],
    forecast: &[ForecastPoint],
    anomalies: &[AnomalyPoint],
) -> ChartGeometry {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let base_y = TOP + plot_h;
    let y_max = nice_ceiling(
        points
            .iter()
            .map(|p| p.revenue)
            .chain(forecast.iter().map(|f| f.hi95))
            .fold(0.0, f64::max),
    );
    let (first, last) = match (points.first(), points.last()) {
        (Some(f), Some(l)) => (f.day, l.day),
        _ => (0, 0),
    };
    let end = forecast.last().map_or(last, |f| f.day.max(last));
    let span = f64::from(end - first);
    let x_of = |day: i32| {
        if span == 0.0 {
            LEFT + plot_w / 2.0
        } else {
            round1(LEFT + plot_w * f64::from(day - first) / span)
        }
    };
    let y_of = |v: f64| round1(base_y - plot_h * (v.max(0.0) / y_max));

    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (round1(x_of(p.day)), y_of(p.revenue)))
        .collect();
    let path = |pts: &[(f64, f64)]| {
        pts.iter()
            .enumerate()
            .map(|(i, (x, y))| format!("{}{x},{y}", if i == 0 { "M" } else { "L" }))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let line = path(&xy);
    let area = match (xy.first(), xy.last()) {
        (Some((x0, _)), Some((x1, _))) => format!("{line} L{x1},{base_y} L{x0},{base_y} Z"),
        _ => String::new(),
    };
    // The forecast starts at the last observed point, so that the two lines join.
    let fc: Vec<&ForecastPoint> = forecast.iter().filter(|f| f.day > last).collect();
    let fx: Vec<f64> = fc.iter().map(|f| x_of(f.day)).collect();
    let mut fline: Vec<(f64, f64)> = xy.last().copied().into_iter().collect();
    fline.extend(fx.iter().zip(&fc).map(|(x, f)| (*x, y_of(f.revenue))));
    let lo = |g: fn(&ForecastPoint) -> f64| fc.iter().map(|f| y_of(g(f))).collect::<Vec<_>>();
    let markers = anomalies
        .iter()
        .filter(|a| a.day >= first && a.day <= last)
        .map(|a| {
            (
                x_of(a.day),
                y_of(a.revenue),
                format!(
                    "{}: revenue {} against an expected {} (score {:.1})",
                    a.date,
                    format_compact(a.revenue),
                    format_compact(a.expected),
                    a.score
                ),
            )
        })
        .collect();
    let y_ticks = (0..=4)
        .map(|i| {
            let v = y_max * f64::from(i) / 4.0;
            (y_of(v), format_compact(v))
        })
        .collect();
    let mut x_ticks = match points.len() {
        0 => Vec::new(),
        1 => vec![(x_of(first), points[0].date.clone())],
        n => {
            let mid = &points[n / 2];
            let mut ticks = vec![(x_of(first), points[0].date.clone())];
            if n > 2 {
                ticks.push((x_of(mid.day), mid.date.clone()));
            }
            ticks.push((x_of(last), points[n - 1].date.clone()));
            ticks
        }
    };
    if let Some(f) = fc.last() {
        x_ticks.push((x_of(f.day), f.date.clone()));
    }
    ChartGeometry {
        line,
        area,
        y_ticks,
        x_ticks,
        points: xy,
        forecast: if fc.is_empty() {
            String::new()
        } else {
            path(&fline)
        },
        band80: band(&fx, &lo(|f| f.lo80), &lo(|f| f.hi80)),
        band95: band(&fx, &lo(|f| f.lo95), &lo(|f| f.hi95)),
        markers,
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The chart. Re-renders when `points` changes.
#[component]
pub fn RevenueChart(
    #[prop(into)] points: Signal<Vec<DailyPoint>>,
    #[prop(optional, into)] forecast: Signal<Vec<ForecastPoint>>,
    #[prop(optional, into)] anomalies: Signal<Vec<AnomalyPoint>>,
) -> impl IntoView {
    let geometry = Memo::new(move |_| {
        points.with(|p| forecast.with(|f| anomalies.with(|a| chart_geometry(p, f, a))))
    });
    let label = move || {
        let (n, f, a) = (
            points.with(Vec::len),
            forecast.with(Vec::len),
            anomalies.with(Vec::len),
        );
        format!("Daily revenue over {n} days, a forecast of {f} days with 80 % and 95 % bands, {a} anomalous days marked")
    };
    let plot_right = WIDTH - RIGHT;
    let base_y = HEIGHT - BOTTOM;
    let label_y = HEIGHT - 8.0;
    let x_count = move || geometry.with(|g| g.x_ticks.len());

    view! {
        <svg
            class="chart"
            viewBox=format!("0 0 {WIDTH} {HEIGHT}")
            role="img"
            aria-label=label
        >
            <g class="grid">
                {move || {
                    geometry
                        .get()
                        .y_ticks
                        .into_iter()
                        .map(|(y, label)| {
                            view! {
                                <line x1=LEFT x2=plot_right y1=y y2=y></line>
                                <text x=LEFT - 8.0 y=y + 4.0 text-anchor="end">{label}</text>
                            }
                        })
                        .collect_view()
                }}
            </g>
            <path class="band95" d=move || geometry.get().band95></path>
            <path class="band80" d=move || geometry.get().band80></path>
            <path class="area" d=move || geometry.get().area></path>
            <path class="line" d=move || geometry.get().line></path>
            <path class="forecast" d=move || geometry.get().forecast></path>
            <g class="anomalies">
                {move || {
                    geometry
                        .get()
                        .markers
                        .into_iter()
                        .map(|(x, y, text)| {
                            view! {
                                <circle class="anomaly" cx=x cy=y r="4" data-testid="anomaly">
                                    <title>{text}</title>
                                </circle>
                            }
                        })
                        .collect_view()
                }}
            </g>
            <line class="axis" x1=LEFT x2=plot_right y1=base_y y2=base_y></line>
            <g class="x-labels">
                {move || {
                    let n = x_count();
                    geometry
                        .get()
                        .x_ticks
                        .into_iter()
                        .enumerate()
                        .map(|(i, (x, label))| {
                            let anchor = if n == 1 {
                                "middle"
                            } else if i == 0 {
                                "start"
                            } else if i + 1 == n {
                                "end"
                            } else {
                                "middle"
                            };
                            view! { <text x=x y=label_y text-anchor=anchor>{label}</text> }
                        })
                        .collect_view()
                }}
            </g>
        </svg>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(date: &str, day: i32, revenue: f64) -> DailyPoint {
        DailyPoint {
            date: date.into(),
            day,
            revenue,
        }
    }

    #[test]
    fn geometry_of_three_days() {
        let g = chart_geometry(
            &[
                point("2024-01-01", 19723, 50.0),
                point("2024-01-02", 19724, 100.0),
                point("2024-01-03", 19725, 0.0),
            ],
            &[],
            &[],
        );
        // y axis tops at 100; plot spans x 56..784 and y 12..232.
        assert_eq!(g.line, "M56,122 L420,12 L784,232");
        assert_eq!(g.area, "M56,122 L420,12 L784,232 L784,232 L56,232 Z");
        assert_eq!(g.y_ticks.first(), Some(&(232.0, "0".to_string())));
        assert_eq!(g.y_ticks.last(), Some(&(12.0, "100".to_string())));
        let dates: Vec<&str> = g.x_ticks.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(dates, ["2024-01-01", "2024-01-02", "2024-01-03"]);
    }

    #[test]
    fn gaps_are_spaced_by_date_and_single_point_is_centred() {
        let g = chart_geometry(
            &[
                point("a", 0, 10.0),
                point("b", 1, 10.0),
                point("c", 4, 10.0),
            ],
            &[],
            &[],
        );
        assert_eq!(g.points[1].0, 238.0);
        let single = chart_geometry(&[point("2024-05-01", 5, 7.0)], &[], &[]);
        // 7 on an axis that tops at 10: 70% of the 220-unit plot height above the base line.
        assert_eq!(single.points, vec![(420.0, 78.0)]);
        let empty = chart_geometry(&[], &[], &[]);
        assert!(empty.line.is_empty() && empty.area.is_empty() && empty.x_ticks.is_empty());
    }

    #[test]
    fn forecast_extends_the_axis_and_anomalies_are_marked() {
        let fp = |day: i32, v: f64| ForecastPoint {
            date: format!("f{day}"),
            day,
            revenue: v,
            lo80: v - 10.0,
            hi80: v + 10.0,
            lo95: v - 20.0,
            hi95: v + 20.0,
        };
        let g = chart_geometry(
            &[point("a", 0, 50.0), point("b", 2, 100.0)],
            &[fp(3, 60.0), fp(4, 80.0)],
            &[AnomalyPoint {
                date: "b".into(),
                day: 2,
                revenue: 100.0,
                expected: 40.0,
                score: 5.31,
            }],
        );
        // x: days 0..4 over 56..784 (182 per day); y tops at 100 (the 95 % band's 100).
        assert_eq!(g.line, "M56,122 L420,12");
        assert_eq!(g.forecast, "M420,12 L602,100 L784,56");
        assert_eq!(g.band80, "M602,78 L784,34 L784,78 L602,122 Z");
        assert_eq!(g.band95, "M602,56 L784,12 L784,100 L602,144 Z");
        assert_eq!(
            g.markers,
            vec![(
                420.0,
                12.0,
                "b: revenue 100 against an expected 40 (score 5.3)".into()
            )]
        );
        assert_eq!(g.x_ticks.last().map(|t| t.1.as_str()), Some("f4"));
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(87.0), 100.0);
        assert_eq!(nice_ceiling(1_234.0), 2_000.0);
        assert_eq!(nice_ceiling(2_100.0), 2_500.0);
        assert_eq!(nice_ceiling(4_999.0), 5_000.0);
    }

    #[test]
    fn renders_svg_with_path() {
        let points = vec![
            point("2024-01-01", 19723, 50.0),
            point("2024-01-02", 19724, 100.0),
        ];
        let html = Owner::new().with(|| view! { <RevenueChart points=points/> }.to_html());
        assert!(html.contains("<svg"), "{html}");
        assert!(
            html.contains(r#"<path d="M56,122 L784,12" class="line">"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<path d="M56,122 L784,12 L784,232 L56,232 Z" class="area">"#),
            "{html}"
        );
        assert!(html.contains(">2024-01-02</text>"), "{html}");
        assert!(html.contains(">100</text>"), "{html}");
    }
}
