//! Horizontal bars, one per row, as SVG (server-rendered, hydrated, readable as text).

use leptos::prelude::*;

use crate::format::format_compact;

const WIDTH: f64 = 560.0;
const ROW: f64 = 22.0;
const LABEL: f64 = 150.0;
const VALUE: f64 = 70.0;

/// (label, value) laid out as bars: (y, width, label, value text).
pub fn bar_geometry(items: &[(String, f64)]) -> Vec<(f64, f64, String, String)> {
    let max = items.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let room = WIDTH - LABEL - VALUE;
    items
        .iter()
        .enumerate()
        .map(|(i, (label, v))| {
            let w = if max > 0.0 {
                (v.max(0.0) / max) * room
            } else {
                0.0
            };
            (i as f64 * ROW, w, label.clone(), format_compact(*v))
        })
        .collect()
}

#[component]
pub fn BarChart(items: Vec<(String, f64)>, #[prop(into)] label: String) -> impl IntoView {
    let bars = bar_geometry(&items[..items.len().min(15)]);
    let height = (bars.len().max(1) as f64) * ROW + 4.0;
    let alt = items
        .iter()
        .take(15)
        .map(|(l, v)| format!("{l}: {}", format_compact(*v)))
        .collect::<Vec<_>>()
        .join(", ");
    view! {
        <svg class="chart bars" viewBox=format!("0 0 {WIDTH} {height}") role="img" aria-label=format!("{label}: {alt}")>
            {bars
                .into_iter()
                .map(|(y, w, l, v)| {
                    view! {
                        <g class="bar">
                            <title>{format!("{l}: {v}")}</title>
                            <text class="bar-label" x=LABEL - 6.0 y=y + 15.0 text-anchor="end">{l.chars().take(22).collect::<String>()}</text>
                            <rect x=LABEL y=y + 3.0 width=w.max(1.0) height=ROW - 6.0 rx="2"></rect>
                            <text class="bar-value" x=LABEL + w + 6.0 y=y + 15.0>{v}</text>
                        </g>
                    }
                })
                .collect_view()}
        </svg>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest() {
        let g = bar_geometry(&[("a".into(), 50.0), ("b".into(), 100.0), ("c".into(), -3.0)]);
        assert_eq!(g[1].1, WIDTH - LABEL - VALUE);
        assert_eq!(g[0].1 * 2.0, g[1].1);
        assert_eq!(g[2].1, 0.0);
        assert_eq!(g[2].0, 2.0 * ROW);
    }
}
