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

#[cfg(test)]
mod tests {
    use crate::config::SilverModelSettings;
    use crate::silver::Mapping;
    use crate::sql::Value;

    fn mapping() -> Mapping {
        let settings = SilverModelSettings {
            source: "api".into(),
            entity: Some("rates".into()),
            columns: [("rate_date", "date"), ("base_currency", "base")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            date_formats: vec!["%Y-%m-%d".into()],
            decimal_separator: '.',
            ..Default::default()
        };
        Mapping::new("exchange_rates", &settings).unwrap()
    }

    fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn rate_id_is_derived_and_numbers_are_exact() {
        let m = mapping();
        let v = m
            .parse(&obj(
                serde_json::json!({"date": "2024-03-05", "currency": "usd", "rate": 1.0823}),
            ))
            .unwrap();
        assert_eq!(v[0], Value::Text("EUR:USD:2024-03-05".into()));
        assert_eq!(v[4], Value::Decimal("1.0823".parse().unwrap()));
        // A delete's before image with the full record finds the same key.
        let k = m.key_of(&obj(
            serde_json::json!({"date": "2024-03-05", "currency": "USD", "rate": "1.0823", "base": "EUR"}),
        ));
        assert_eq!(k.as_deref(), Some("EUR:USD:2024-03-05"));
        let err = m
            .parse(&obj(
                serde_json::json!({"date": "2024-03-05", "currency": "USD", "rate": "-1"}),
            ))
            .unwrap_err();
        assert!(err.contains("rate must be positive"), "{err}");
    }
}
