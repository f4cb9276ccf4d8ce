//! The live orders of the MySQL demo shop (binlog CDC): orders per status, refreshed with
//! the page.

use leptos::prelude::*;

use crate::format::{format_count, format_decimal};
use crate::model::{get_shop, Shop};

#[component]
pub fn ShopPanel(
    /// Bumped by the page's refresh timer.
    tick: RwSignal<u64>,
) -> impl IntoView {
    let shop = Resource::new(move || tick.get(), |_| get_shop());
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                shop.await.ok().flatten().map(|s| view! { <ShopView shop=s/> })
            })}
        </Transition>
    }
}

#[component]
fn ShopView(shop: Shop) -> impl IntoView {
    let Shop {
        statuses,
        last_change,
        behind_s,
    } = shop;
    let hint = match (last_change, behind_s) {
        (Some(at), Some(b)) => format!("Last change committed at {at} UTC, {b:.1} s ago"),
        _ => String::new(),
    };
    view! {
        <section class="panels shop-panels">
            <div class="card panel" data-testid="shop">
                <h2>"Live orders (MySQL binlog CDC)"</h2>
                <p class="panel-hint">{hint}</p>
                <table class="shop-status">
                    <thead>
                        <tr>
                            <th>"Status"</th>
                            <th class="num">"Orders"</th>
                            <th class="num">"Value"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {statuses
                            .into_iter()
                            .map(|s| {
                                let label = s.status.clone();
                                view! {
                                <tr data-status=s.status>
                                    <td>{label}</td>
                                    <td class="num">{format_count(s.orders)}</td>
                                    <td class="num">{format_decimal(&s.value, 2)}</td>
                                </tr>
                                }
                            })
                            .collect_view()}
                    </tbody>
                </table>
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ShopStatus;

    #[test]
    fn renders_each_status() {
        let html = Owner::new().with(|| {
            view! {
                <ShopView shop=Shop {
                    statuses: vec![
                        ShopStatus { status: "paid".into(), orders: 1234, value: "99.50".into() },
                        ShopStatus { status: "placed".into(), orders: 2, value: "10".into() },
                    ],
                    last_change: Some("12:00:01".into()),
                    behind_s: Some(0.4),
                }/>
            }
            .to_html()
        });
        assert!(html.contains(r#"data-status="paid""#), "{html}");
        assert!(html.contains("1,234"), "{html}");
        assert!(html.contains("0.4 s ago"), "{html}");
    }
}
