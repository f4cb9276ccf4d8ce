//! The pages' panels: each is one parameterised query over gold, declared in
//! [`super::pages`], answered in one read-only snapshot per page and cached by the gold
//! version. The same declaration serves the page, its CSV export and its drill-through.

use std::sync::Arc;

use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Extension,
};
use chrono::{Datelike, Duration as Days, NaiveDate, Utc};
use leptos::prelude::*;
use tokio_postgres::{types::ToSql, IsolationLevel};

use super::{api::Problem, auth::current_user, db::chain, server::AppState};
use crate::model::{
    ChartView, ColumnView, Filters, Freshness, Kind, LinkView, PageContext, PageData, Panel, Role,
    SessionUser,
};

/// A value bound to a panel's query, from the page's filters (`None` binds SQL NULL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// Start of the resolved date range.
    From,
    /// End of the resolved date range.
    To,
    /// A filter of the URL by name (`country`, `category`, `grain`, `id`, ...).
    Param(&'static str),
    /// The panel's row limit (the export cap for a CSV export).
    Limit,
}

#[derive(Clone, Copy, Debug)]
pub enum Chart {
    Line(&'static str, &'static str),
    Bars(&'static str, &'static str),
    Heat(&'static str, &'static str, &'static str),
}

#[derive(Clone, Copy, Debug)]
pub enum Link {
    Filter(&'static str, &'static str),
    Page(&'static str, &'static str),
}

/// One panel. Its SQL takes `$1..$n` in the order of `binds`, all as text (cast in SQL:
/// `$1::text::date`), and selects the `columns` in order.
#[derive(Clone, Copy, Debug)]
pub struct PanelSpec {
    pub id: &'static str,
    pub title: &'static str,
    pub hint: &'static str,
    pub sql: &'static str,
    pub binds: &'static [Bind],
    pub columns: &'static [(&'static str, &'static str, Kind)],
    pub chart: Option<Chart>,
    pub links: &'static [Link],
    pub limit: u64,
    /// Least role that sees the panel.
    pub role: Role,
    /// Offer a drill-through to the sale lines with the page's filters.
    pub lines: bool,
    /// Columns of a keyset cursor (the `cursor` filter is `v1|v2` of the last row shown).
    pub keyset: &'static [&'static str],
}

pub struct PageSpec {
    pub id: &'static str,
    pub panels: &'static [PanelSpec],
}

/// Errors of a page load, as the page shows them.
fn fail(text: impl Into<String>) -> ServerFnError {
    ServerFnError::new(text.into())
}

fn parse_date(param: &str, value: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| format!("{param}={value:?}: expected a date YYYY-MM-DD"))
}

fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn add_months(d: NaiveDate, months: i32) -> NaiveDate {
    let total = d.year() * 12 + d.month0() as i32 + months;
    NaiveDate::from_ymd_opt(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1).unwrap_or(d)
}

/// The date range of the filters on `today` (in the reporting time zone).
pub fn resolve_range(
    f: &Filters,
    today: NaiveDate,
) -> Result<(Option<NaiveDate>, Option<NaiveDate>), String> {
    let custom = || -> Result<_, String> {
        let from = f
            .from
            .as_deref()
            .map(|v| parse_date("from", v))
            .transpose()?;
        let to = f.to.as_deref().map(|v| parse_date("to", v)).transpose()?;
        if let (Some(a), Some(b)) = (from, to) {
            if a > b {
                return Err(format!("from {a} is after to {b}"));
            }
        }
        Ok((from, to))
    };
    let quarter_start = |d: NaiveDate| add_months(month_start(d), -((d.month0() % 3) as i32));
    Ok(match f.preset.as_deref() {
        None | Some("custom") => custom()?,
        Some("all") => (None, None),
        Some("7d") => (Some(today - Days::days(6)), Some(today)),
        Some("30d") => (Some(today - Days::days(29)), Some(today)),
        Some("90d") => (Some(today - Days::days(89)), Some(today)),
        Some("mtd") => (Some(month_start(today)), Some(today)),
        Some("qtd") => (Some(quarter_start(today)), Some(today)),
        Some("ytd") => (NaiveDate::from_ymd_opt(today.year(), 1, 1), Some(today)),
        Some("prev_month") => {
            let start = add_months(month_start(today), -1);
            (Some(start), Some(month_start(today) - Days::days(1)))
        }
        Some("prev_year") => (
            NaiveDate::from_ymd_opt(today.year() - 1, 1, 1),
            NaiveDate::from_ymd_opt(today.year() - 1, 12, 31),
        ),
        Some(other) => {
            return Err(format!(
                "preset={other:?}: use 7d, 30d, 90d, mtd, qtd, ytd, prev_month, prev_year, all or custom"
            ))
        }
    })
}

/// Today in the reporting zone and the freshness of the sales marts.
struct Context {
    today: NaiveDate,
    newest_event_at: Option<chrono::DateTime<Utc>>,
    committed_at: Option<chrono::DateTime<Utc>>,
}

const CONTEXT_SQL: &str =
    "SELECT (now() AT TIME ZONE $1::text)::date, f.newest_event_at, f.committed_at
    FROM (SELECT 1) x LEFT JOIN gold.freshness f ON f.mart = 'fact_sales'";

fn fmt_time(t: Option<chrono::DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn freshness(state: &AppState, c: &Context) -> Freshness {
    let age_s = c
        .newest_event_at
        .map(|t| (Utc::now() - t).num_seconds().max(0));
    let d = &state.settings.dashboard;
    let level = match age_s {
        None => "red",
        Some(a) if a >= d.freshness_red_s as i64 => "red",
        Some(a) if a >= d.freshness_amber_s as i64 => "amber",
        Some(_) => "ok",
    };
    Freshness {
        newest_event_at: fmt_time(c.newest_event_at),
        committed_at: fmt_time(c.committed_at),
        age_s,
        level: level.into(),
    }
}

/// The text values bound for `spec` under the filters and the resolved range.
fn binds(
    spec: &PanelSpec,
    f: &Filters,
    range: (Option<NaiveDate>, Option<NaiveDate>),
    limit: u64,
) -> Vec<Option<String>> {
    spec.binds
        .iter()
        .map(|b| match b {
            Bind::From => range.0.map(|d| d.to_string()),
            Bind::To => range.1.map(|d| d.to_string()),
            Bind::Param(p) => f.get(p).map(str::to_string),
            Bind::Limit => Some(limit.to_string()),
        })
        .collect()
}

/// The panel's statement with every column as its JSON text (exact decimals, ISO dates).
fn text_sql(spec: &PanelSpec) -> String {
    let cols: Vec<String> = spec
        .columns
        .iter()
        .map(|(c, _, _)| format!("to_json(q.\"{c}\") #>> '{{}}'"))
        .collect();
    format!("SELECT {} FROM ({}) q", cols.join(", "), spec.sql)
}

fn refs(values: &[Option<String>]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn view(spec: &PanelSpec, page: &str, f: &Filters, user: &SessionUser) -> Panel {
    let query = f.query();
    let analyst = user.role >= Role::Analyst;
    Panel {
        id: spec.id.into(),
        title: spec.title.into(),
        hint: spec.hint.into(),
        columns: spec
            .columns
            .iter()
            .map(|(name, label, kind)| ColumnView {
                name: (*name).into(),
                label: (*label).into(),
                kind: *kind,
            })
            .collect(),
        rows: Vec::new(),
        chart: spec.chart.map(|c| match c {
            Chart::Line(x, y) => ChartView::Line {
                x: x.into(),
                y: y.into(),
            },
            Chart::Bars(l, v) => ChartView::Bars {
                label: l.into(),
                value: v.into(),
            },
            Chart::Heat(r, c, v) => ChartView::Heat {
                row: r.into(),
                col: c.into(),
                value: v.into(),
            },
        }),
        links: spec
            .links
            .iter()
            .map(|l| match l {
                Link::Filter(column, param) => LinkView::Filter {
                    column: (*column).into(),
                    param: (*param).into(),
                },
                Link::Page(column, prefix) => LinkView::Page {
                    column: (*column).into(),
                    prefix: (*prefix).into(),
                },
            })
            .collect(),
        export: analyst.then(|| {
            let id =
                f.id.as_deref()
                    .map(crate::format::url_encode)
                    .unwrap_or_default();
            format!("/export/{page}/{}.csv?id={id}&{query}", spec.id)
        }),
        lines: (analyst && spec.lines).then(|| format!("/lines?{query}")),
        truncated: false,
        next: None,
    }
}

/// `?cursor=v1|v2` after the last row shown, for a keyset panel.
fn next_link(spec: &PanelSpec, page: &str, filters: &Filters, panel: &Panel) -> Option<String> {
    if spec.keyset.is_empty() {
        return None;
    }
    let last = panel.rows.last()?;
    let values: Option<Vec<String>> = spec
        .keyset
        .iter()
        .map(|k| {
            let i = spec.columns.iter().position(|(c, _, _)| c == k)?;
            last[i].clone()
        })
        .collect();
    let mut f = filters.clone();
    f.cursor = Some(values?.join("|"));
    Some(format!("/{page}?{}", f.query()))
}

/// Body of every page's server function.
pub async fn load(page: &PageSpec, filters: Filters) -> Result<PageData, ServerFnError> {
    let state = use_context::<AppState>().ok_or_else(|| fail("the dashboard state is missing"))?;
    let user = current_user().ok_or_else(|| fail("sign in first"))?;
    let started = std::time::Instant::now();
    let result = load_inner(&state, page, filters, user).await;
    metrics::histogram!("dashboard_page_load_seconds", "page" => page.id)
        .record(started.elapsed().as_secs_f64());
    result
}

async fn load_inner(
    state: &AppState,
    page: &PageSpec,
    filters: Filters,
    user: SessionUser,
) -> Result<PageData, ServerFnError> {
    let tz = state.settings.dashboard.time_zone.clone();
    let version = state.cache.version();
    let mut client = state
        .pool
        .get()
        .await
        .map_err(|e| fail(format!("the warehouse cannot be reached: {}", chain(&e))))?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| fail(chain(&e)))?;
    let row = tx
        .query_one(CONTEXT_SQL, &[&tz])
        .await
        .map_err(|e| fail(format!("reading the gold freshness: {}", chain(&e))))?;
    let ctx = Context {
        today: row.get(0),
        newest_event_at: row.get(1),
        committed_at: row.get(2),
    };
    let range = resolve_range(&filters, ctx.today).map_err(fail)?;
    let mut panels = Vec::new();
    for spec in page.panels.iter().filter(|p| user.role >= p.role) {
        let values = binds(spec, &filters, range, spec.limit + 1);
        let key = format!("panel:{}:{}:{:?}", page.id, spec.id, values);
        let mut panel = view(spec, page.id, &filters, &user);
        let rows: Arc<str> = match state.cache.get(&key) {
            Some(hit) => hit,
            None => {
                let rows = tx
                    .query(&text_sql(spec), &refs(&values))
                    .await
                    .map_err(|e| {
                        tracing::warn!(page = page.id, panel = spec.id, error = %chain(&e), "panel query failed");
                        fail(format!("{}: {}", spec.title, chain(&e)))
                    })?;
                let cells: Vec<Vec<Option<String>>> = rows
                    .iter()
                    .map(|r| (0..spec.columns.len()).map(|i| r.get(i)).collect())
                    .collect();
                let text: Arc<str> = serde_json::to_string(&cells).unwrap_or_default().into();
                state.cache.put(key, version, text.clone());
                text
            }
        };
        panel.rows = serde_json::from_str(&rows).unwrap_or_default();
        if panel.rows.len() as u64 > spec.limit {
            panel.rows.truncate(spec.limit as usize);
            panel.truncated = true;
            panel.next = next_link(spec, page.id, &filters, &panel);
        }
        panels.push(panel);
    }
    tx.commit().await.map_err(|e| fail(chain(&e)))?;
    if page.id == "pipeline" {
        let live = super::health_probe::panel(
            state.settings.ingest.metrics_addr,
            state.settings.transform.metrics_addr,
        )
        .await;
        panels.insert(panels.len().min(1), live);
    }
    Ok(PageData {
        context: PageContext {
            user,
            time_zone: tz,
            from: range.0.map(|d| d.to_string()),
            to: range.1.map(|d| d.to_string()),
            freshness: freshness(state, &ctx),
            refresh_ms: state.refresh_ms,
            gold_version: version,
        },
        panels,
        next_cursor: None,
    })
}

/// `GET /export/{page}/{panel}.csv?<filters>`: the panel's rows as CSV, streamed, up to
/// `[dashboard] export_row_cap` rows (analysts).
pub async fn export(
    State(state): State<AppState>,
    Path((page, file)): Path<(String, String)>,
    Extension(user): Extension<SessionUser>,
    Query(filters): Query<Filters>,
) -> Response {
    match export_inner(&state, &page, &file, &user, filters).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn export_inner(
    state: &AppState,
    page: &str,
    file: &str,
    user: &SessionUser,
    filters: Filters,
) -> Result<Response, Problem> {
    if user.role < Role::Analyst {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "exports need the analyst role; {} has the {} role",
                user.username, user.role
            ),
        ));
    }
    let not_found = || Problem::new(StatusCode::NOT_FOUND, format!("no table {page}/{file}"));
    let spec_page = super::pages::find(page).ok_or_else(not_found)?;
    let panel_id = file.strip_suffix(".csv").ok_or_else(not_found)?;
    let spec = spec_page
        .panels
        .iter()
        .find(|p| p.id == panel_id && user.role >= p.role)
        .ok_or_else(not_found)?;
    let client = state
        .pool
        .get()
        .await
        .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, chain(&e)))?;
    let today: NaiveDate = client
        .query_one(
            "SELECT (now() AT TIME ZONE $1::text)::date",
            &[&state.settings.dashboard.time_zone],
        )
        .await
        .map_err(|e| Problem::new(StatusCode::SERVICE_UNAVAILABLE, chain(&e)))?
        .get(0);
    let range =
        resolve_range(&filters, today).map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e))?;
    let values = binds(
        spec,
        &filters,
        range,
        state.settings.dashboard.export_row_cap,
    );
    let stream = client
        .query_raw(&text_sql(spec), values.clone())
        .await
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, chain(&e)))?;
    let header: Vec<String> = spec.columns.iter().map(|(c, _, _)| c.to_string()).collect();
    let cap = state.settings.dashboard.export_row_cap as usize;
    let body = super::csv_export::body(header, client, stream, cap, "page export");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{page}-{panel_id}.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(preset: &str, today: &str) -> (Option<String>, Option<String>) {
        let f = Filters {
            preset: Some(preset.into()),
            ..Default::default()
        };
        let (a, b) =
            resolve_range(&f, NaiveDate::parse_from_str(today, "%Y-%m-%d").unwrap()).unwrap();
        (a.map(|d| d.to_string()), b.map(|d| d.to_string()))
    }

    #[test]
    fn presets() {
        let s = |a: &str, b: &str| (Some(a.to_string()), Some(b.to_string()));
        assert_eq!(range("7d", "2024-03-10"), s("2024-03-04", "2024-03-10"));
        assert_eq!(range("30d", "2024-03-10"), s("2024-02-10", "2024-03-10"));
        assert_eq!(range("mtd", "2024-03-10"), s("2024-03-01", "2024-03-10"));
        assert_eq!(range("qtd", "2024-05-20"), s("2024-04-01", "2024-05-20"));
        assert_eq!(range("ytd", "2024-05-20"), s("2024-01-01", "2024-05-20"));
        assert_eq!(
            range("prev_month", "2024-03-10"),
            s("2024-02-01", "2024-02-29")
        );
        assert_eq!(
            range("prev_month", "2024-01-10"),
            s("2023-12-01", "2023-12-31")
        );
        assert_eq!(
            range("prev_year", "2024-01-10"),
            s("2023-01-01", "2023-12-31")
        );
        assert_eq!(range("all", "2024-01-10"), (None, None));
        let bad = Filters {
            from: Some("2024-02-30".into()),
            ..Default::default()
        };
        assert!(resolve_range(&bad, NaiveDate::default()).is_err());
        let reversed = Filters {
            from: Some("2024-02-03".into()),
            to: Some("2024-02-01".into()),
            ..Default::default()
        };
        assert!(resolve_range(&reversed, NaiveDate::default()).is_err());
        let unknown = Filters {
            preset: Some("yesterday".into()),
            ..Default::default()
        };
        assert!(resolve_range(&unknown, NaiveDate::default()).is_err());
    }
}
