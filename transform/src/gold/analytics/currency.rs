//! Revenue in one reporting currency (`gold.country_sales_reporting`), written by the
//! `reporting_currency` job: a rate that arrives late re-prices every day after it, so the
//! mart is recomputed whole from `gold.fact_sales` and `silver.exchange_rates` rather than
//! kept by deltas.
//!
//! A sale is in the currency of its customer's country (`[transform.analytics.reporting]
//! country_currency`, matched on the country's name or code in `silver.countries`, or on
//! the customer's country written as a code); the rates' base currency when the country has
//! none. Each day's revenue of a country is converted at the rate of that day (the latest
//! rate on or before it), `round(revenue × rate(reporting) / rate(sale), 2)`, so a period's
//! converted revenue is the sum of its days, each rounded to the cent. Days without a usable
//! rate are left out of `revenue_reporting` and counted in `unconverted_days`.

use super::jobs::JobError;
use crate::sql::DbError;
use serde::Deserialize;
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// `[transform.analytics.reporting]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportingSettings {
    /// ISO 4217 code gold reports in.
    #[serde(default = "eur")]
    pub currency: String,
    /// Base currency of `silver.exchange_rates` (one unit of it buys `rate` units).
    #[serde(default = "eur")]
    pub rates_base: String,
    /// Currency of the sales per country code; countries not listed sell in `rates_base`.
    #[serde(default = "default_country_currency")]
    pub country_currency: BTreeMap<String, String>,
}

fn eur() -> String {
    "EUR".into()
}

impl Default for ReportingSettings {
    fn default() -> Self {
        ReportingSettings {
            currency: eur(),
            rates_base: eur(),
            country_currency: default_country_currency(),
        }
    }
}

/// The euro area, the other EU currencies and a few large markets.
pub fn default_country_currency() -> BTreeMap<String, String> {
    let euro = [
        "AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU", "LV",
        "MT", "NL", "PT", "SI", "SK",
    ];
    let other = [
        ("CH", "CHF"),
        ("GB", "GBP"),
        ("US", "USD"),
        ("SE", "SEK"),
        ("DK", "DKK"),
        ("NO", "NOK"),
        ("PL", "PLN"),
        ("CZ", "CZK"),
        ("HU", "HUF"),
        ("RO", "RON"),
        ("BG", "BGN"),
        ("JP", "JPY"),
        ("CA", "CAD"),
        ("AU", "AUD"),
        ("CN", "CNY"),
        ("IN", "INR"),
    ];
    euro.iter()
        .map(|c| (c.to_string(), "EUR".to_string()))
        .chain(other.iter().map(|(c, k)| (c.to_string(), k.to_string())))
        .collect()
}

impl ReportingSettings {
    /// Currency codes are three ASCII letters; country codes are not empty.
    pub fn validate(&self) -> Result<(), String> {
        let code = |c: &str| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic());
        for (what, c) in [
            ("currency", &self.currency),
            ("rates_base", &self.rates_base),
        ] {
            if !code(c) {
                return Err(format!(
                    "[transform.analytics.reporting] {what} = {c:?} is not an ISO 4217 code (three letters, e.g. \"EUR\")"
                ));
            }
        }
        for (country, c) in &self.country_currency {
            if country.trim().is_empty() || !code(c) {
                return Err(format!(
                    "[transform.analytics.reporting.country_currency] {country:?} = {c:?}: expected a country code and a three-letter currency code"
                ));
            }
        }
        Ok(())
    }
}

const SQL: &str = "
WITH cc AS (SELECT upper(code) AS code, upper(cur) AS cur FROM unnest($3::text[], $4::text[]) AS u(code, cur)),
days AS (SELECT f.sale_date, f.country, sum(f.amount) AS revenue
         FROM gold.fact_sales f GROUP BY 1, 2),
cur AS (SELECT d.*, coalesce(
            (SELECT cc.cur FROM silver.countries co JOIN cc ON cc.code = co.country_code
             WHERE co.country_name = d.country OR co.country_code = upper(d.country)
             ORDER BY co.country_name = d.country DESC LIMIT 1),
            (SELECT cc.cur FROM cc WHERE cc.code = upper(d.country)),
            upper($2)) AS sale_currency
        FROM days d),
rated AS (SELECT c.*,
            CASE WHEN c.sale_currency = upper($2) THEN 1::numeric ELSE
              (SELECT r.rate FROM silver.exchange_rates r
               WHERE r.base_currency = upper($2) AND r.currency = c.sale_currency AND r.rate_date <= c.sale_date
               ORDER BY r.rate_date DESC LIMIT 1) END AS sale_rate,
            CASE WHEN upper($1) = upper($2) THEN 1::numeric ELSE
              (SELECT r.rate FROM silver.exchange_rates r
               WHERE r.base_currency = upper($2) AND r.currency = upper($1) AND r.rate_date <= c.sale_date
               ORDER BY r.rate_date DESC LIMIT 1) END AS reporting_rate
          FROM cur c),
conv AS (SELECT r.*, round(r.revenue * r.reporting_rate / r.sale_rate, 2) AS revenue_reporting FROM rated r),
g(grain) AS (VALUES ('month'), ('year'), ('all'))
INSERT INTO gold.country_sales_reporting (grain, period_start, country, sale_currency, reporting_currency,
    revenue_local, revenue_reporting, days, unconverted_days, computed_at)
SELECT g.grain, gold.period_start(g.grain, c.sale_date), c.country, min(c.sale_currency), upper($1),
       sum(c.revenue), coalesce(sum(c.revenue_reporting), 0), count(*),
       count(*) FILTER (WHERE c.revenue_reporting IS NULL), now()
FROM conv c CROSS JOIN g GROUP BY 1, 2, 3
";

/// Recomputes `gold.country_sales_reporting`; returns the rows written.
pub async fn refresh(client: &mut Client, s: &ReportingSettings) -> Result<u64, JobError> {
    let tx = client.transaction().await.map_err(DbError::query(
        "starting the reporting_currency transaction",
    ))?;
    tx.execute("DELETE FROM gold.country_sales_reporting", &[])
        .await
        .map_err(DbError::query("emptying gold.country_sales_reporting"))?;
    let codes: Vec<&str> = s.country_currency.keys().map(String::as_str).collect();
    let curs: Vec<&str> = s.country_currency.values().map(String::as_str).collect();
    let n = tx
        .execute(SQL, &[&s.currency, &s.rates_base, &codes, &curs])
        .await
        .map_err(DbError::query("writing gold.country_sales_reporting"))?;
    crate::gold::marts::freshness::bump(
        &tx,
        &["country_sales_reporting"],
        &crate::gold::Touched::default(),
    )
    .await?;
    tx.commit()
        .await
        .map_err(DbError::query("committing the reporting_currency job"))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let s = ReportingSettings::default();
        assert_eq!(s.currency, "EUR");
        assert_eq!(s.country_currency["FR"], "EUR");
        assert_eq!(s.country_currency["GB"], "GBP");
        assert!(s.validate().is_ok());
        let bad = ReportingSettings {
            currency: "EURO".into(),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("ISO 4217"));
        let mut bad = ReportingSettings::default();
        bad.country_currency.insert("XX".into(), "1".into());
        assert!(bad.validate().unwrap_err().contains("country_currency"));
    }

    #[test]
    fn parses_a_configuration_block() {
        let s: ReportingSettings =
            toml_like("currency = \"USD\"\n[country_currency]\nFR = \"EUR\"\nUS = \"USD\"\n");
        assert_eq!(s.currency, "USD");
        assert_eq!(s.rates_base, "EUR");
        assert_eq!(s.country_currency.len(), 2);
    }

    fn toml_like(text: &str) -> ReportingSettings {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(text))
            .extract()
            .expect("valid settings")
    }
}
