//! "/customers": lifetime value, RFM segments, cohort retention, customers by country.

panel_page!(
    load_customers,
    CustomersPage,
    "Customers",
    "/customers",
    CUSTOMERS,
    &["country", "segment"]
);
