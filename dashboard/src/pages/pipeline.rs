//! "/pipeline": services, freshness per mart, jobs, data quality, quarantine, dead letters, schema history.

panel_page!(
    load_pipeline,
    PipelinePage,
    "Pipeline",
    "/pipeline",
    PIPELINE,
    &[]
);
