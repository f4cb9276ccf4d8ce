//! A KPI card.

use leptos::prelude::*;

#[component]
pub fn KpiCard(
    /// Stable identifier, used as `data-kpi` (tests and styling).
    id: &'static str,
    label: &'static str,
    #[prop(into)] value: Signal<String>,
    #[prop(optional, into)] hint: Option<String>,
) -> impl IntoView {
    view! {
        <div class="card kpi" data-kpi=id>
            <div class="kpi-label">{label}</div>
            <div class="kpi-value">{move || value.get()}</div>
            {hint.map(|h| view! { <div class="kpi-hint">{h}</div> })}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_label_and_value() {
        let html = Owner::new().with(|| {
            view! { <KpiCard id="revenue" label="Revenue" value="1,234.50".to_string()/> }.to_html()
        });
        assert!(html.contains(r#"data-kpi="revenue""#), "{html}");
        assert!(html.contains("Revenue</div>"), "{html}");
        assert!(html.contains("1,234.50</div>"), "{html}");
    }
}
