//! "/employees": sales per employee, over the period and per month.

panel_page!(
    load_employees,
    EmployeesPage,
    "Employees",
    "/employees",
    EMPLOYEES,
    &["range", "employee"]
);
