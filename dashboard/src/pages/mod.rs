//! One module per page.

pub mod overview;
