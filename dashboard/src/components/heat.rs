//! A heat map (pivot): one row per `row` value, one column per `col` value; the cell's
//! shade follows its value. Rendered as an HTML table so that it reads as text too.

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::{format::format_cell, model::Kind};

/// (row labels, column labels, cells[row][col]) of the triples, in first-seen order.
pub fn pivot(
    triples: &[(String, String, Option<String>)],
) -> (Vec<String>, Vec<String>, Vec<Vec<Option<String>>>) {
    let mut rows: Vec<String> = Vec::new();
    let mut cols: Vec<String> = Vec::new();
    let mut cells: BTreeMap<(usize, usize), Option<String>> = BTreeMap::new();
    for (r, c, v) in triples {
        let ri = rows.iter().position(|x| x == r).unwrap_or_else(|| {
            rows.push(r.clone());
            rows.len() - 1
        });
        let ci = cols.iter().position(|x| x == c).unwrap_or_else(|| {
            cols.push(c.clone());
            cols.len() - 1
        });
        cells.insert((ri, ci), v.clone());
    }
    // Numeric column labels (months since, years) in numeric order.
    let mut order: Vec<usize> = (0..cols.len()).collect();
    if cols.iter().all(|c| c.parse::<f64>().is_ok()) {
        order.sort_by(|a, b| {
            cols[*a]
                .parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&cols[*b].parse::<f64>().unwrap_or(0.0))
        });
    }
    let grid = (0..rows.len())
        .map(|ri| {
            order
                .iter()
                .map(|ci| cells.get(&(ri, *ci)).cloned().flatten())
                .collect()
        })
        .collect();
    let cols = order.iter().map(|i| cols[*i].clone()).collect();
    (rows, cols, grid)
}

#[component]
pub fn HeatMap(
    triples: Vec<(String, String, Option<String>)>,
    kind: Kind,
    #[prop(into)] row_label: String,
) -> impl IntoView {
    let (rows, cols, grid) = pivot(&triples);
    let max = grid
        .iter()
        .flatten()
        .filter_map(|v| v.as_deref()?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    view! {
        <div class="heat-wrap">
            <table class="heat">
                <thead>
                    <tr>
                        <th>{row_label}</th>
                        {cols.into_iter().map(|c| view! { <th class="num">{c}</th> }).collect_view()}
                    </tr>
                </thead>
                <tbody>
                    {rows
                        .into_iter()
                        .zip(grid)
                        .map(|(r, cells)| {
                            view! {
                                <tr>
                                    <th>{r}</th>
                                    {cells
                                        .into_iter()
                                        .map(|v| {
                                            let shade = v
                                                .as_deref()
                                                .and_then(|x| x.parse::<f64>().ok())
                                                .map(|x| if max > 0.0 { x / max } else { 0.0 })
                                                .unwrap_or(0.0);
                                            let style = format!("background: rgba(37, 99, 235, {:.2})", 0.08 + shade * 0.72);
                                            let blank = v.is_none();
                                            view! {
                                                <td class="num" class:blank=blank style=(!blank).then_some(style)>
                                                    {if blank { String::new() } else { format_cell(kind, v.as_deref()) }}
                                                </td>
                                            }
                                        })
                                        .collect_view()}
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pivots_and_leaves_gaps() {
        let t = |r: &str, c: &str, v: Option<&str>| {
            (r.to_string(), c.to_string(), v.map(str::to_string))
        };
        let (rows, cols, grid) = pivot(&[
            t("2024-01", "0", Some("1")),
            t("2024-01", "10", Some("0.5")),
            t("2024-01", "2", Some("0.25")),
            t("2024-02", "0", Some("1")),
            t("2024-02", "2", None),
        ]);
        assert_eq!(rows, ["2024-01", "2024-02"]);
        assert_eq!(cols, ["0", "2", "10"]);
        assert_eq!(
            grid[0],
            [Some("1".into()), Some("0.25".into()), Some("0.5".into())]
        );
        assert_eq!(grid[1], [Some("1".into()), None, None]);
    }
}
