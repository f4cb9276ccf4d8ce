//! "/products/:id": one product: monthly performance, best customers.

panel_page!(
    load_product,
    ProductPage,
    "Product",
    "/products/",
    PRODUCT,
    &["range"]
);
