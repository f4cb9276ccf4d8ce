use crate::silver::{Clean::*, Field, FieldType::*, Model};

pub const MODEL: Model = Model {
    name: "customers",
    table: "silver.customers",
    key: "customer_id",
    fields: &[
        Field::new("customer_id", Text, Upper).required(),
        Field::new("full_name", Text, Collapse),
        Field::new("email", Text, Lower),
        Field::new("country", Text, Title),
        Field::new("city", Text, Title),
        Field::new("signup_date", Date, Collapse),
        // Customer segment as the source names it (B2B, retail, ...), title-cased.
        Field::new("segment", Text, Title),
    ],
    derive: None,
};
