//! "/products": top products for the period, the category breakdown.

panel_page!(
    load_products,
    ProductsPage,
    "Products",
    "/products",
    PRODUCTS,
    &["range", "category"]
);
