//! One panel of a page: title, chart, a sortable table, links (cross-filter, drill-through,
//! detail pages) and the CSV export.

use leptos::prelude::*;

use super::{bars::BarChart, chart::RevenueChart, heat::HeatMap};
use crate::{
    format::{format_cell, url_encode},
    model::{ChartView, DailyPoint, Filters, Kind, LinkView, Panel},
};

fn numeric(kind: Kind) -> bool {
    !matches!(kind, Kind::Text | Kind::Date)
}

/// Days since 1970-01-01 of `YYYY-MM-DD...`.
fn day_number(date: &str) -> Option<i32> {
    let mut parts = date.get(..10)?.split('-');
    let (y, m, d): (i32, u32, u32) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy as i32;
    Some(era * 146_097 + doe - 719_468)
}

fn col_index(panel: &Panel, name: &str) -> Option<usize> {
    panel.columns.iter().position(|c| c.name == name)
}

/// The page's URL with `param` set to `value` (a cross-filter), cursor dropped.
pub fn filter_href(path: &str, filters: &Filters, param: &str, value: &str) -> String {
    let mut f = filters.clone();
    f.set(param, Some(value.to_string()));
    f.cursor = None;
    format!("{path}?{}", f.query())
}

#[component]
fn Chart(panel: Panel) -> impl IntoView {
    let Some(chart) = panel.chart.clone() else {
        return ().into_any();
    };
    match chart {
        ChartView::Line { x, y } => {
            let (Some(xi), Some(yi)) = (col_index(&panel, &x), col_index(&panel, &y)) else {
                return ().into_any();
            };
            let mut points: Vec<DailyPoint> = panel
                .rows
                .iter()
                .filter_map(|r| {
                    let date = r[xi].clone()?;
                    Some(DailyPoint {
                        day: day_number(&date)?,
                        date,
                        revenue: r[yi].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0.0),
                    })
                })
                .collect();
            points.sort_by_key(|p| p.day);
            if points.len() < 2 {
                return ().into_any();
            }
            view! { <RevenueChart points=points/> }.into_any()
        }
        ChartView::Bars { label, value } => {
            let (Some(li), Some(vi)) = (col_index(&panel, &label), col_index(&panel, &value))
            else {
                return ().into_any();
            };
            let items: Vec<(String, f64)> = panel
                .rows
                .iter()
                .map(|r| {
                    (
                        r[li].clone().unwrap_or_else(|| "Unknown".into()),
                        r[vi].as_deref().and_then(|v| v.parse().ok()).unwrap_or(0.0),
                    )
                })
                .collect();
            view! { <BarChart items=items label=panel.title.clone()/> }.into_any()
        }
        ChartView::Heat { row, col, value } => {
            let (Some(ri), Some(ci), Some(vi)) = (
                col_index(&panel, &row),
                col_index(&panel, &col),
                col_index(&panel, &value),
            ) else {
                return ().into_any();
            };
            let kind = panel.columns[vi].kind;
            let row_label = panel.columns[ri].label.clone();
            let triples: Vec<(String, String, Option<String>)> = panel
                .rows
                .iter()
                .map(|r| {
                    (
                        r[ri].clone().unwrap_or_default(),
                        r[ci].clone().unwrap_or_default(),
                        r[vi].clone(),
                    )
                })
                .collect();
            view! { <HeatMap triples=triples kind=kind row_label=row_label/> }.into_any()
        }
    }
}

#[component]
pub fn PanelView(panel: Panel, filters: Filters, #[prop(into)] path: String) -> impl IntoView {
    // (column, descending) chosen by clicking a header; None: the server's order.
    let sort = RwSignal::new(None::<(usize, bool)>);
    let columns = panel.columns.clone();
    let rows = panel.rows.clone();
    let links = panel.links.clone();
    let sorted = move || {
        let mut rows = rows.clone();
        if let Some((i, desc)) = sort.get() {
            let kind = columns[i].kind;
            rows.sort_by(|a, b| {
                let ord = if numeric(kind) {
                    let num = |v: &Option<String>| {
                        v.as_deref()
                            .and_then(|x| x.parse::<f64>().ok())
                            .unwrap_or(f64::MIN)
                    };
                    num(&a[i]).total_cmp(&num(&b[i]))
                } else {
                    a[i].cmp(&b[i])
                };
                if desc {
                    ord.reverse()
                } else {
                    ord
                }
            });
        }
        rows
    };
    let header_columns = panel.columns.clone();
    let body_columns = panel.columns.clone();
    let hint = panel.hint.clone();
    let empty = panel.rows.is_empty();
    let truncated = panel.truncated;
    let shown = panel.rows.len();
    view! {
        <section class="card panel" data-panel=panel.id.clone()>
            <header class="panel-head">
                <h2>{panel.title.clone()}</h2>
                <div class="panel-actions">
                    {panel.lines.clone().map(|href| view! { <a class="action" data-testid="drill" href=href>"Lines behind"</a> })}
                    {panel.export.clone().map(|href| view! { <a class="action" data-testid="export" href=href download="">"CSV"</a> })}
                </div>
            </header>
            {(!hint.is_empty()).then(|| view! { <p class="panel-hint">{hint}</p> })}
            <Chart panel=panel.clone()/>
            {if empty {
                view! { <p class="notice" data-testid="empty">"No rows for these filters."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap">
                        <table class="data">
                            <thead>
                                <tr>
                                    {header_columns
                                        .into_iter()
                                        .enumerate()
                                        .map(|(i, c)| {
                                            let class = if numeric(c.kind) { "num sortable" } else { "sortable" };
                                            let arrow = move || match sort.get() {
                                                Some((j, true)) if j == i => " ▼",
                                                Some((j, false)) if j == i => " ▲",
                                                _ => "",
                                            };
                                            view! {
                                                <th class=class data-col=c.name.clone() on:click=move |_| {
                                                    sort.update(|s| {
                                                        *s = match *s {
                                                            Some((j, desc)) if j == i => Some((i, !desc)),
                                                            _ => Some((i, numeric(c.kind))),
                                                        }
                                                    })
                                                }>{c.label.clone()}{arrow}</th>
                                            }
                                        })
                                        .collect_view()}
                                </tr>
                            </thead>
                            <tbody>
                                {move || {
                                    sorted()
                                        .into_iter()
                                        .map(|row| {
                                            view! {
                                                <tr>
                                                    {row
                                                        .iter()
                                                        .zip(body_columns.iter())
                                                        .map(|(v, c)| {
                                                            let text = format_cell(c.kind, v.as_deref());
                                                            let class = if numeric(c.kind) { "num" } else { "" };
                                                            let href = v.as_deref().and_then(|v| {
                                                                links.iter().find_map(|l| match l {
                                                                    LinkView::Filter { column, param } if *column == c.name => {
                                                                        Some(filter_href(&path, &filters, param, v))
                                                                    }
                                                                    LinkView::Page { column, prefix } if *column == c.name => {
                                                                        Some(format!("{prefix}{}", url_encode(v)))
                                                                    }
                                                                    _ => None,
                                                                })
                                                            });
                                                            view! {
                                                                <td class=class data-col=c.name.clone()>
                                                                    {match href {
                                                                        Some(h) => view! { <a href=h>{text}</a> }.into_any(),
                                                                        None => text.into_any(),
                                                                    }}
                                                                </td>
                                                            }
                                                        })
                                                        .collect_view()}
                                                </tr>
                                            }
                                        })
                                        .collect_view()
                                }}
                            </tbody>
                        </table>
                    </div>
                    {match panel.next.clone() {
                        Some(next) => view! { <p class="panel-hint"><a data-testid="next" href=next>"Next rows →"</a></p> }.into_any(),
                        None => truncated.then(|| view! { <p class="panel-hint">{format!("First {shown} rows; the CSV export has them all.")}</p> }).into_any(),
                    }}
                }
                .into_any()
            }}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(day_number("2024-01-01"), Some(19723));
        assert_eq!(day_number("2024-03-01T00:00:00"), Some(19783));
        assert_eq!(day_number("x"), None);
    }

    #[test]
    fn cross_filter_links_keep_the_other_filters() {
        let f = Filters {
            preset: Some("30d".into()),
            cursor: Some("abc".into()),
            ..Default::default()
        };
        assert_eq!(
            filter_href("/sales", &f, "country", "Côte d'Ivoire"),
            "/sales?preset=30d&country=C%C3%B4te%20d%27Ivoire"
        );
    }
}
