-- Web and app usage (Azure Blob exports, connector `blob`, entity `web_events`): silver events and the gold daily usage view.
CREATE TABLE silver.web_events (
    event_id text NOT NULL PRIMARY KEY,
    event_date date,
    event_time text,
    channel text,
    event_type text,
    session_id text,
    customer_id text,
    page text,
    device text,
    app_version text,
    _bronze_event_id bigint NOT NULL,
    _source jsonb NOT NULL,
    _updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX web_events_day_channel ON silver.web_events (event_date, channel);
COMMENT ON TABLE silver.web_events IS 'Web and app usage events from the daily exports in Azure Blob Storage (container web-usage), one row per event_id; a re-exported blob (new etag) updates its events.';
COMMENT ON COLUMN silver.web_events.event_id IS 'Natural key of the event, as exported.';
COMMENT ON COLUMN silver.web_events.event_date IS 'UTC day of the event (from its timestamp).';
COMMENT ON COLUMN silver.web_events.event_time IS 'Event timestamp as exported (ISO 8601, UTC).';
COMMENT ON COLUMN silver.web_events.channel IS 'web (browser) or app (mobile application), lower-cased.';
COMMENT ON COLUMN silver.web_events.event_type IS 'session_start, page_view, screen_view, session_end, ... lower-cased.';
COMMENT ON COLUMN silver.web_events.session_id IS 'Session the event belongs to.';
COMMENT ON COLUMN silver.web_events.customer_id IS 'Signed-in customer (silver.customers.customer_id), upper-cased; null for anonymous visitors.';
COMMENT ON COLUMN silver.web_events.page IS 'Page path (web) or screen name (app).';
COMMENT ON COLUMN silver.web_events.device IS 'Device class (desktop, mobile, tablet) or app platform (ios, android).';
COMMENT ON COLUMN silver.web_events.app_version IS 'Version of the mobile app (app events only).';
COMMENT ON COLUMN silver.web_events._bronze_event_id IS 'Lineage: bronze.events.event_id of the event that produced this version of the row.';
COMMENT ON COLUMN silver.web_events._source IS 'Lineage: source position of that event (container, blob, etag, record index).';
COMMENT ON COLUMN silver.web_events._updated_at IS 'When this row was last written.';

CREATE VIEW gold.web_usage_daily AS
SELECT event_date AS day,
       channel,
       count(DISTINCT session_id)::bigint AS sessions,
       count(*) FILTER (WHERE event_type IN ('page_view', 'screen_view'))::bigint AS page_views,
       count(DISTINCT customer_id)::bigint AS customers,
       count(*)::bigint AS events
FROM silver.web_events
WHERE event_date IS NOT NULL
GROUP BY event_date, channel;
COMMENT ON VIEW gold.web_usage_daily IS 'Web and app usage per day and channel: sessions, page (or screen) views, signed-in customers and events.';
COMMENT ON COLUMN gold.web_usage_daily.day IS 'UTC day of the events.';
COMMENT ON COLUMN gold.web_usage_daily.channel IS 'web or app.';
COMMENT ON COLUMN gold.web_usage_daily.sessions IS 'Distinct sessions with at least one event that day.';
COMMENT ON COLUMN gold.web_usage_daily.page_views IS 'Page views (web) or screen views (app).';
COMMENT ON COLUMN gold.web_usage_daily.customers IS 'Distinct signed-in customers.';
COMMENT ON COLUMN gold.web_usage_daily.events IS 'All events of the day, session starts and ends included.';
