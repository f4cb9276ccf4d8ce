-- customers (some moved: history with 2 versions), products, sales in orders of several lines
INSERT INTO silver.customers (customer_id, full_name, country, city, _bronze_event_id, _source)
SELECT 'C' || i, 'Name ' || i, (ARRAY['France','Germany','Spain',NULL])[1 + i % 4], 'Town', i, '{}'
FROM generate_series(1, 40) i;
INSERT INTO silver.customer_history (customer_id, version, country, valid_from, valid_to, is_current, _bronze_event_id)
SELECT 'C' || i, 1, CASE WHEN i % 5 = 0 THEN 'Italy' ELSE (ARRAY['France','Germany','Spain',NULL])[1 + i % 4] END,
       now() - interval '30 days', CASE WHEN i % 5 = 0 THEN now() - interval '1 day' END, i % 5 <> 0, i
FROM generate_series(1, 40) i;
INSERT INTO silver.customer_history (customer_id, version, country, valid_from, is_current, _bronze_event_id)
SELECT 'C' || i, 2, (ARRAY['France','Germany','Spain',NULL])[1 + i % 4], now() - interval '1 day', true, 100 + i
FROM generate_series(1, 40) i WHERE i % 5 = 0;
INSERT INTO silver.products (product_id, product_name, category, unit_price, _bronze_event_id, _source)
SELECT 'P' || i, 'Product ' || i, CASE WHEN i % 4 = 0 THEN NULL ELSE 'Cat' || (i % 3) END, (i * 1.25)::numeric(12,2), i, '{}'
FROM generate_series(1, 12) i;
-- 300 lines in 120 orders; customers C1..C45 (C41+ unknown), product P13 unknown, fractional quantities
INSERT INTO silver.sales (sale_id, order_id, sale_date, customer_id, product_id, employee_id, quantity, unit_price, amount, _bronze_event_id, _source)
SELECT 'S' || i, 'O' || (i % 120), date '2023-01-01' + ((i % 120) * 7 + (i % 3)) , 'C' || (1 + (i % 120) % 45),
       'P' || (1 + i % 13), CASE WHEN i % 7 = 0 THEN NULL ELSE 'E' || (i % 4) END,
       CASE WHEN i % 3 = 0 THEN (i % 10 + 0.125) ELSE (i % 5 + 1)::numeric END,
       (1 + i % 13) * 1.25, round((CASE WHEN i % 3 = 0 THEN (i % 10 + 0.125) ELSE (i % 5 + 1) END) * (1 + i % 13) * 1.25, 2)
       + CASE WHEN i % 17 = 0 THEN -50 ELSE 0 END,
       1000 + i, '{}'
FROM generate_series(1, 300) i;
-- web events
INSERT INTO silver.web_events (event_id, event_date, channel, event_type, session_id, customer_id, _bronze_event_id, _source)
SELECT 'W' || i, CASE WHEN i % 50 = 0 THEN NULL ELSE date '2024-01-01' + i % 5 END,
       (ARRAY['web','app',NULL])[1 + i % 3], (ARRAY['page_view','screen_view','click'])[1 + i % 3],
       CASE WHEN i % 11 = 0 THEN NULL ELSE 's' || (i % 23) END, CASE WHEN i % 4 = 0 THEN NULL ELSE 'C' || (i % 9) END,
       5000 + i, '{}'
FROM generate_series(1, 200) i;
