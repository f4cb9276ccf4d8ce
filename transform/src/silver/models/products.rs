use crate::silver::{Check, Clean::*, Field, FieldType::*, Model};

pub const MODEL: Model = Model {
    name: "products",
    table: "silver.products",
    key: "product_id",
    fields: &[
        Field::new("product_id", Text, Upper).required(),
        Field::new("product_name", Text, Collapse),
        Field::new("category", Text, Title),
        Field::new("unit_price", Decimal, Collapse)
            .check(Check::NonNegative)
            .int_digits(10),
    ],
    derive: None,
};
