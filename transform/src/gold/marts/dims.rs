//! Dimensions: date (static calendar), customer (type-2 history), product, country and
//! employee, each with an UNKNOWN member that facts with an unknown reference point to.
//! Refreshed for the touched keys from silver in the batch's transaction.

use crate::gold::{col, Mart, Touched};
use crate::sql::DbError;
use tokio_postgres::Transaction;

pub const DIM_DATE: Mart = Mart {
    name: "dim_date",
    table: "gold.dim_date",
    comment: "Calendar dimension, one row per day from 2000-01-01 to 2040-12-31.",
    columns: &[
        col(
            "date_key",
            "integer",
            "Surrogate key YYYYMMDD, referenced by fact_sales.date_key.",
        ),
        col("date", "date", "The calendar day."),
        col("year", "smallint", "Calendar year."),
        col("quarter", "smallint", "Quarter of the year, 1-4."),
        col("month", "smallint", "Month of the year, 1-12."),
        col("month_name", "text", "English month name."),
        col("iso_year", "smallint", "ISO 8601 week-numbering year."),
        col("iso_week", "smallint", "ISO 8601 week number."),
        col(
            "week_start",
            "date",
            "Monday of the ISO week (the period_start of grain week).",
        ),
        col("month_start", "date", "First day of the month."),
        col("quarter_start", "date", "First day of the quarter."),
        col("day_of_month", "smallint", "Day of the month, 1-31."),
        col(
            "day_of_week",
            "smallint",
            "ISO day of week, 1 = Monday ... 7 = Sunday.",
        ),
        col("day_name", "text", "English day name."),
        col("is_weekend", "boolean", "True on Saturday and Sunday."),
    ],
    key: &["date_key"],
    indexes: &["date"],
    module: "transform/src/gold/marts/dims.rs",
};

pub const DIM_CUSTOMER: Mart = Mart {
    name: "dim_customer",
    table: "gold.dim_customer",
    comment: "Customer dimension with history (type 2): one row per customer version (a change of country, city or segment opens a new one), plus the UNKNOWN member. Join facts on customer_key AND is_current for current attributes.",
    columns: &[
        col("customer_key", "text", "Customer id (UNKNOWN for the unknown member)."),
        col("version", "integer", "Version number (0 for the unknown member)."),
        col("full_name", "text", "Customer name."),
        col("email", "text", "E-mail address."),
        col("country", "text", "Country (Unknown when missing)."),
        col("city", "text", "City."),
        col("segment", "text", "Segment as the source names it."),
        col("signup_date", "date", "Sign-up date."),
        col("valid_from", "timestamp with time zone", "When the warehouse learned of this version."),
        col("valid_to", "timestamp with time zone", "When it was replaced (null while current)."),
        col("is_current", "boolean", "True for the version in force."),
    ],
    key: &["customer_key", "version"],
    indexes: &[],
    module: "transform/src/gold/marts/dims.rs",
};

pub const DIM_PRODUCT: Mart = Mart {
    name: "dim_product",
    table: "gold.dim_product",
    comment: "Product dimension: every silver product plus the UNKNOWN member.",
    columns: &[
        col(
            "product_key",
            "text",
            "Product id (UNKNOWN for the unknown member).",
        ),
        col("product_name", "text", "Product name."),
        col("category", "text", "Category (Unknown when missing)."),
        col("unit_price", "numeric(12,2)", "List price per unit."),
    ],
    key: &["product_key"],
    indexes: &["category"],
    module: "transform/src/gold/marts/dims.rs",
};

pub const DIM_COUNTRY: Mart = Mart {
    name: "dim_country",
    table: "gold.dim_country",
    comment: "Country dimension: the reference countries, any country a customer names that the reference lacks, and Unknown.",
    columns: &[
        col("country", "text", "Country name, the key used by the facts and marts."),
        col("country_code", "text", "Code from the reference list (null when not in it)."),
        col("region", "text", "Region from the reference list."),
    ],
    key: &["country"],
    indexes: &[],
    module: "transform/src/gold/marts/dims.rs",
};

pub const DIM_EMPLOYEE: Mart = Mart {
    name: "dim_employee",
    table: "gold.dim_employee",
    comment: "Employee (sales person) dimension: every silver employee plus the UNKNOWN member for lines without one.",
    columns: &[
        col("employee_key", "text", "Employee id (UNKNOWN for the unknown member)."),
        col("full_name", "text", "Name."),
        col("title", "text", "Job title."),
        col("country", "text", "Country the employee works in."),
        col("hire_date", "date", "Hiring date."),
    ],
    key: &["employee_key"],
    indexes: &[],
    module: "transform/src/gold/marts/dims.rs",
};

/// The calendar and the UNKNOWN members of every dimension.
pub async fn seed_dates(tx: &Transaction<'_>) -> Result<(), DbError> {
    tx.batch_execute(
        "INSERT INTO gold.dim_date
         SELECT to_char(d, 'YYYYMMDD')::integer, d::date, extract(year FROM d), extract(quarter FROM d),
                extract(month FROM d), trim(to_char(d, 'Month')), extract(isoyear FROM d),
                extract(week FROM d), date_trunc('week', d)::date, date_trunc('month', d)::date,
                date_trunc('quarter', d)::date, extract(day FROM d), extract(isodow FROM d),
                trim(to_char(d, 'Day')), extract(isodow FROM d) IN (6, 7)
         FROM generate_series(date '2000-01-01', date '2040-12-31', interval '1 day') AS d",
    )
    .await
    .map_err(DbError::query("filling gold.dim_date"))
}

/// Refreshes the touched members of every dimension.
pub async fn refresh(tx: &Transaction<'_>, t: &Touched) -> Result<(), DbError> {
    let customers: Vec<&str> = t.customers.iter().map(String::as_str).collect();
    let products: Vec<&str> = t.products.iter().map(String::as_str).collect();
    let employees: Vec<&str> = t.employees.iter().map(String::as_str).collect();
    tx.execute(
        "INSERT INTO gold.dim_customer VALUES ('UNKNOWN', 0, 'Unknown customer', NULL, 'Unknown', NULL, NULL, NULL, '-infinity', NULL, true)
         ON CONFLICT DO NOTHING",
        &[],
    )
    .await
    .map_err(DbError::query("adding the unknown customer"))?;
    if !customers.is_empty() {
        tx.execute(
            "DELETE FROM gold.dim_customer WHERE customer_key = ANY($1)",
            &[&customers],
        )
        .await
        .map_err(DbError::query("refreshing gold.dim_customer"))?;
        tx.execute(
            "INSERT INTO gold.dim_customer
             SELECT customer_id, version, full_name, email, coalesce(country, 'Unknown'), city, segment,
                    signup_date, valid_from, valid_to, is_current
             FROM silver.customer_history WHERE customer_id = ANY($1)",
            &[&customers],
        )
        .await
        .map_err(DbError::query("refreshing gold.dim_customer"))?;
    }
    let sql = "INSERT INTO gold.dim_product VALUES ('UNKNOWN', 'Unknown product', 'Unknown', NULL) ON CONFLICT DO NOTHING;
               INSERT INTO gold.dim_employee VALUES ('UNKNOWN', 'Unknown employee', NULL, NULL, NULL) ON CONFLICT DO NOTHING;";
    tx.batch_execute(sql)
        .await
        .map_err(DbError::query("adding the unknown members"))?;
    if !products.is_empty() {
        refresh_keys(
            tx,
            "gold.dim_product",
            "product_key",
            "SELECT product_id, product_name, coalesce(category, 'Unknown'), unit_price FROM silver.products WHERE product_id = ANY($1)",
            &products,
        )
        .await?;
    }
    if !employees.is_empty() {
        refresh_keys(
            tx,
            "gold.dim_employee",
            "employee_key",
            "SELECT employee_id, full_name, title, country, hire_date FROM silver.employees WHERE employee_id = ANY($1)",
            &employees,
        )
        .await?;
    }
    if !t.countries.is_empty() || !customers.is_empty() {
        tx.batch_execute(
            "DELETE FROM gold.dim_country;
             INSERT INTO gold.dim_country
             SELECT DISTINCT ON (country) country, country_code, region FROM (
                 SELECT country_name AS country, country_code, region, 0 AS pri FROM silver.countries WHERE country_name IS NOT NULL
                 UNION ALL SELECT DISTINCT country, NULL, NULL, 1 FROM silver.customers WHERE country IS NOT NULL
                 UNION ALL SELECT 'Unknown', NULL, NULL, 2) c
             ORDER BY country, pri, country_code",
        )
        .await
        .map_err(DbError::query("refreshing gold.dim_country"))?;
    }
    Ok(())
}

async fn refresh_keys(
    tx: &Transaction<'_>,
    table: &str,
    key: &str,
    select: &str,
    keys: &[&str],
) -> Result<(), DbError> {
    tx.execute(
        &format!("DELETE FROM {table} WHERE {key} = ANY($1)"),
        &[&keys],
    )
    .await
    .map_err(DbError::query(format!("refreshing {table}")))?;
    tx.execute(&format!("INSERT INTO {table} {select}"), &[&keys])
        .await
        .map_err(DbError::query(format!("refreshing {table}")))?;
    Ok(())
}
