use crate::silver::{Clean::*, Field, FieldType::*, Model};

/// Web and app usage events (Azure Blob exports). Configure the source with
/// `[transform.silver.web_events] source = "blob"`, and map `event_date`/`event_time` onto
/// the export's timestamp column.
pub const MODEL: Model = Model {
    name: "web_events",
    table: "silver.web_events",
    key: "event_id",
    fields: &[
        Field::new("event_id", Text, Collapse).required(),
        Field::new("event_date", Date, Collapse).required(),
        Field::new("event_time", Text, Collapse),
        Field::new("channel", Text, Lower).required(),
        Field::new("event_type", Text, Lower).required(),
        Field::new("session_id", Text, Collapse),
        Field::new("customer_id", Text, Upper),
        Field::new("page", Text, Collapse),
        Field::new("device", Text, Lower),
        Field::new("app_version", Text, Collapse),
    ],
    derive: None,
};
