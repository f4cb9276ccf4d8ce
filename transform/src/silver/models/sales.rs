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
        // Fractional quantities (kilograms, hours) are valid.
        Field::new("quantity", Decimal, Collapse)
            .required()
            .check(Check::Positive)
            .int_digits(12),
        Field::new("unit_price", Decimal, Collapse)
            .check(Check::NonNegative)
            .int_digits(10),
        Field::new("amount", Decimal, Collapse)
            .check(Check::NonNegative)
            .int_digits(12),
        // The order (basket) the line belongs to; a line without one is its own order.
        Field::new("order_id", Text, Upper),
    ],
    derive: Some(derive_amount),
};

/// `amount` is the source's when it has one, else quantity x unit_price (rounded to the
/// cent, half away from zero); a sale without either is rejected. A line without an
/// `order_id` is its own order (`order_id` = `sale_id`).
fn derive_amount(values: &mut [Value]) -> Result<(), String> {
    if values[8] == Value::Null {
        values[8] = values[0].clone();
    }
    if values[7] == Value::Null {
        match (&values[5], &values[6]) {
            (Value::Decimal(q), Value::Decimal(p)) => {
                let amount = (q * p).round_dp_with_strategy(
                    2,
                    rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                );
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
