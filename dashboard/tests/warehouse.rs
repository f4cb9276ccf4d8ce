//! The overview queries against a real PostgreSQL: a scratch database per test run.
//! Admin URL from ETL_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres);
//! fails, naming the URL, when no server answers there (`./dev stack` starts one).
#![cfg(feature = "ssr")]

mod common;

use common::{exec, scratch, transform};
use dashboard::{model::Warehouse, ssr::db};

#[tokio::test]
async fn waiting_then_ready() {
    let name = format!("etl_dashboard_it_{}", std::process::id());
    let (url, admin_client) = scratch(&name).await;
    let pool = db::pool(&url, 2).unwrap();

    // Run the checks in a task so that a failed assertion still drops the database.
    let checks = tokio::spawn(async move {
        // No gold layer yet.
        let w = dashboard::ssr::overview::load(&pool).await.unwrap();
        assert!(matches!(&w, Warehouse::Waiting(r) if r.contains("gold layer does not exist")), "{w:?}");

        transform(&url, "migrate");
        let w = dashboard::ssr::overview::load(&pool).await.unwrap();
        assert!(matches!(&w, Warehouse::Waiting(r) if r.contains("no sales")), "{w:?}");

        exec(
            &url,
            "INSERT INTO silver.customers (customer_id, country, _bronze_event_id, _source) VALUES
               ('C1', 'France', 1, '{}'), ('C2', 'Germany', 2, '{}');
             INSERT INTO silver.sales (sale_id, order_id, sale_date, customer_id, product_id, quantity, amount, _bronze_event_id, _source) VALUES
               ('S1', 'S1', '2024-01-01', 'C1', 'P', 1, 1000.10, 3, '{}'),
               ('S2', 'S2', '2024-01-03', 'C2', 'P', 1, 20.00, 4, '{}'),
               ('S3', 'S3', '2024-01-03', 'C9', 'P', 1, 0.05, 5, '{}'),
               ('S0', 'S0', '2022-06-01', 'C1', 'P', 1, 7.00, 6, '{}');",
        )
        .await;
        // Gold is kept by transform; rebuild it from silver as the stream would.
        transform(&url, "rebuild");
        let Warehouse::Ready(data) = dashboard::ssr::overview::load(&pool).await.unwrap() else {
            panic!("expected data");
        };
        assert_eq!(data.kpis.revenue, "1027.15");
        assert_eq!(data.kpis.orders, 4);
        assert_eq!(data.kpis.customers, 3, "C1, C2 and the Unknown member");
        // Only the last 365 days of data: the 2022 sale is out of the chart, in the KPIs.
        let days: Vec<_> = data.daily.iter().map(|p| (p.date.as_str(), p.revenue)).collect();
        assert_eq!(days, [("2024-01-01", 1000.10), ("2024-01-03", 20.05)]);
        assert_eq!(data.daily[1].day - data.daily[0].day, 2);
        let countries: Vec<_> = data.countries.iter().map(|c| (c.country.as_str(), c.revenue.as_str())).collect();
        assert_eq!(countries, [("France", "1007.10"), ("Germany", "20.00"), ("Unknown", "0.05")]);
    })
    .await;

    common::drop_db(&admin_client, &name).await;
    if let Err(e) = checks {
        std::panic::resume_unwind(e.into_panic());
    }
}
