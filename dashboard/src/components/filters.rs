//! The filter bar: a GET form, so the filters live in the URL (shareable, the back button
//! works) and the page works before hydration; after it, the router navigates client-side.

use leptos::prelude::*;
use leptos_router::components::Form;

use crate::model::Filters;

const PRESETS: &[(&str, &str)] = &[
    ("all", "All time"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("mtd", "Month to date"),
    ("qtd", "Quarter to date"),
    ("ytd", "Year to date"),
    ("prev_month", "Previous month"),
    ("prev_year", "Previous year"),
    ("custom", "Custom (from / to)"),
];

const GRAINS: &[&str] = &["day", "week", "month", "quarter", "year"];

#[component]
pub fn FilterBar(
    filters: Filters,
    /// Which filters the page takes besides the date range (`country`, `grain`, ...).
    fields: &'static [&'static str],
    #[prop(into)] path: String,
    /// The range the filters resolve to, shown next to the preset.
    #[prop(optional, into)]
    resolved: Option<String>,
) -> impl IntoView {
    let dated = fields.contains(&"range");
    let preset = filters.preset.clone().unwrap_or_else(|| {
        if filters.from.is_some() || filters.to.is_some() {
            "custom".into()
        } else {
            "all".into()
        }
    });
    view! {
        <Form method="GET" action=path.clone() attr:class="filters" attr:data-testid="filters">
            {dated.then(|| view! {
                <label>"Period "
                    <select name="preset" data-testid="preset">
                        {PRESETS.iter().map(|(v, label)| view! {
                            <option value=*v selected=preset == *v>{*label}</option>
                        }).collect_view()}
                    </select>
                </label>
                <label>"From " <input type="date" name="from" value=filters.from.clone().unwrap_or_default()/></label>
                <label>"To " <input type="date" name="to" value=filters.to.clone().unwrap_or_default()/></label>
            })}
            {fields.iter().filter(|f| **f != "range").map(|f| {
                let value = filters.get(f).unwrap_or_default().to_string();
                if *f == "grain" {
                    let current = if value.is_empty() { "month".to_string() } else { value };
                    view! {
                        <label>"Grain "
                            <select name="grain" data-testid="grain">
                                {GRAINS.iter().map(|g| view! { <option value=*g selected=current == *g>{*g}</option> }).collect_view()}
                            </select>
                        </label>
                    }.into_any()
                } else {
                    view! {
                        <label>{format!("{} ", capitalise(f))}
                            <input name=*f value=value placeholder="any" size="12" data-testid=format!("filter-{f}")/>
                        </label>
                    }.into_any()
                }
            }).collect_view()}
            <button type="submit" data-testid="apply">"Apply"</button>
            <a class="action" href=path>"Reset"</a>
            {resolved.map(|r| view! { <span class="resolved" data-testid="resolved">{r}</span> })}
        </Form>
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
