//! Customer history (type 2): `silver.customer_history` keeps one version per change of a
//! customer's country, city or segment, with `valid_from` / `valid_to` (the commit times at
//! which the warehouse learned of the change) and `is_current`. Other attribute changes
//! (a name, an e-mail) update the current version in place.

use crate::sql::DbError;
use tokio_postgres::Transaction;

/// Brings the history of the touched customers in line with `silver.customers`, in the
/// batch's transaction: closes a current version whose tracked attributes changed (or whose
/// customer was deleted), opens a new one, and refreshes the untracked attributes.
pub async fn track(tx: &Transaction<'_>, touched: &[String]) -> Result<(), DbError> {
    tx.execute(
        "WITH t AS (SELECT DISTINCT k FROM unnest($1::text[]) AS k)
         UPDATE silver.customer_history h SET valid_to = now(), is_current = false
         FROM t LEFT JOIN silver.customers c ON c.customer_id = t.k
         WHERE h.customer_id = t.k AND h.is_current
           AND (c.customer_id IS NULL
                OR (h.country, h.city, h.segment) IS DISTINCT FROM (c.country, c.city, c.segment))",
        &[&touched],
    )
    .await
    .map_err(DbError::query("closing changed customer versions"))?;
    tx.execute(
        "UPDATE silver.customer_history h
         SET full_name = c.full_name, email = c.email, signup_date = c.signup_date,
             _bronze_event_id = c._bronze_event_id
         FROM silver.customers c
         WHERE c.customer_id = ANY($1) AND h.customer_id = c.customer_id AND h.is_current",
        &[&touched],
    )
    .await
    .map_err(DbError::query("updating current customer versions"))?;
    tx.execute(
        "INSERT INTO silver.customer_history
             (customer_id, version, full_name, email, country, city, segment, signup_date,
              valid_from, valid_to, is_current, _bronze_event_id)
         SELECT c.customer_id,
                coalesce((SELECT max(version) FROM silver.customer_history p WHERE p.customer_id = c.customer_id), 0) + 1,
                c.full_name, c.email, c.country, c.city, c.segment, c.signup_date,
                now(), NULL, true, c._bronze_event_id
         FROM silver.customers c
         WHERE c.customer_id = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM silver.customer_history h
                           WHERE h.customer_id = c.customer_id AND h.is_current)",
        &[&touched],
    )
    .await
    .map_err(DbError::query("opening new customer versions"))?;
    Ok(())
}
