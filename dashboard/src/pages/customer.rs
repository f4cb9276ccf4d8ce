//! "/customers/:id": one customer: value, segment, orders, history.

panel_page!(
    load_customer,
    CustomerPage,
    "Customer",
    "/customers/",
    CUSTOMER,
    &[]
);
