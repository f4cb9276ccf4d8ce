use crate::silver::{Clean::*, Field, FieldType::*, Model};

pub const MODEL: Model = Model {
    name: "countries",
    table: "silver.countries",
    key: "country_code",
    fields: &[
        Field::new("country_code", Text, Upper).required(),
        Field::new("country_name", Text, Title),
        Field::new("region", Text, Title),
    ],
    derive: None,
};
