//! "/lines": the sale lines behind a figure (drill-through, analysts), paged by a cursor.

panel_page!(
    load_lines,
    LinesPage,
    "Sale lines",
    "/lines",
    LINES_PAGE,
    &["range", "country", "product", "employee"]
);
