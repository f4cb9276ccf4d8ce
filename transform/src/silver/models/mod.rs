//! The silver models, one module each. A model declares its table, key and typed fields;
//! the configuration maps a source entity's columns onto those fields.

pub mod countries;
pub mod customers;
pub mod employees;
pub mod products;
pub mod sales;
pub mod web_events;
