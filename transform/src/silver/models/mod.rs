//! The silver models, one module each. A model declares its table, key and typed fields;
//! the configuration maps a source entity's columns onto those fields.

pub mod catalogue;
pub mod countries;
pub mod customers;
pub mod employees;
pub mod exchange_rates;
pub mod products;
pub mod sales;
pub mod web_events;
