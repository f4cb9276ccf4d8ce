use crate::silver::{Clean::*, Field, FieldType::*, Model};

pub const MODEL: Model = Model {
    name: "employees",
    table: "silver.employees",
    key: "employee_id",
    fields: &[
        Field::new("employee_id", Text, Upper).required(),
        Field::new("full_name", Text, Collapse),
        Field::new("title", Text, Collapse),
        Field::new("country", Text, Title),
        Field::new("hire_date", Date, Collapse),
    ],
    derive: None,
};
