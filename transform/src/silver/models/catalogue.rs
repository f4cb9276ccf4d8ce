//! A product catalogue read from an API (`[transform.silver.catalogue] source = "api"`):
//! the current list price of each product; the price history is in bronze (one `u` event
//! per change).

use crate::silver::{Check, Clean::*, Field, FieldType::*, Model};

pub const MODEL: Model = Model {
    name: "catalogue",
    table: "silver.catalogue",
    key: "product_id",
    fields: &[
        Field::new("product_id", Text, Upper).required(),
        Field::new("product_name", Text, Collapse),
        Field::new("category", Text, Title),
        Field::new("list_price", Decimal, Collapse)
            .required()
            .check(Check::NonNegative)
            .int_digits(10),
        Field::new("currency", Text, Upper),
    ],
    derive: None,
};
