use crate::silver::{Check, Clean::*, Field, FieldType::*, Model};
use crate::sql::Value;

pub const MODEL: Model = Model {
    name: "sales",
    table: "silver.sales",
    key: "sale_id",
    fields: &[
        Field::new("sale_id", Text, Upper).required(),
        Field::new("sale_date", Date, Collapse).required(),
        Field::new("customer_id", Text, Upper).required(),
        Field::new("product_id", Text, Upper).required(),
        Field::new("employee_id", Text, Upper),
        Field::new("quantity", Int, Collapse)
            .required()
            .check(Check::Positive),
        Field::new("unit_price", Decimal, Collapse)
            .check(Check::NonNegative)
            .int_digits(10),
        Field::new("amount", Decimal, Collapse)
            .check(Check::NonNegative)
            .int_digits(12),
    ],
    derive: Some(derive_amount),
};

/// `amount` is the source's when it has one, else quantity x unit_price; a sale without
/// either is rejected.
fn derive_amount(values: &mut [Value]) -> Result<(), String> {
    if values[7] == Value::Null {
        match (&values[5], &values[6]) {
            (Value::Int(q), Value::Decimal(p)) => {
                let amount = (rust_decimal::Decimal::from(*q) * p).round_dp(2);
                if amount.abs() >= rust_decimal::Decimal::from(10u64.pow(12)) {
                    return Err(format!(
                        "amount {amount} (quantity x unit_price) is out of range"
                    ));
                }
                values[7] = Value::Decimal(amount);
            }
            _ => return Err("missing amount, and no quantity and unit_price to compute it".into()),
        }
    }
    Ok(())
}
