//! "/sales": revenue by period with growth, by country, by country and year, distributions.

panel_page!(
    load_sales,
    SalesPage,
    "Sales",
    "/sales",
    SALES,
    &["range", "grain", "country"]
);
