//! Daily exchange rates from an API (`[transform.silver.exchange_rates] source = "api"`):
//! how many units of `currency` one unit of `base_currency` buys on `rate_date`.

use crate::silver::{Check, Clean::*, Field, FieldType::*, Model};
use crate::sql::Value;

pub const MODEL: Model = Model {
    name: "exchange_rates",
    table: "silver.exchange_rates",
    key: "rate_id",
    fields: &[
        // Derived `<BASE>:<CURRENCY>:<YYYY-MM-DD>` unless the source has a column for it.
        Field::new("rate_id", Text, Upper),
        Field::new("rate_date", Date, Collapse).required(),
        Field::new("base_currency", Text, Upper),
        Field::new("currency", Text, Upper).required(),
        Field::new("rate", Decimal, Collapse)
            .required()
            .check(Check::Positive)
            .int_digits(8),
    ],
    derive: Some(derive_rate_id),
};

/// The base currency defaults to EUR (the ECB's and the demo's); the key is built from the
/// base, the currency and the date.
fn derive_rate_id(values: &mut [Value]) -> Result<(), String> {
    if values[2] == Value::Null {
        values[2] = Value::Text("EUR".into());
    }
    if values[0] == Value::Null {
        match (&values[1], &values[2], &values[3]) {
            (Value::Date(d), Value::Text(b), Value::Text(c)) => {
                values[0] = Value::Text(format!("{b}:{c}:{}", d.format("%Y-%m-%d")));
            }
            _ => return Err("cannot build rate_id without rate_date and currency".into()),
        }
    }
    Ok(())
}
