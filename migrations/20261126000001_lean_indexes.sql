-- Fewer index entries per order (docs/performance.md, "Where the time goes"). Settling an
-- order changes its status, and every secondary index holding `status` or `kpi_date`
-- then moved the order's entry (a delete-mark and an insert, purged later); growing a
-- customer's total moved its entry in the total_spent index. None of these indexes serves
-- the workflow; they served reports that run rarely and now scan instead:
-- - idx_orders_status_kpi_date: the KPI rebuild/reconcile sums (`producer kpis --source
--   mysql`, `producer reconcile`): a scan of orders (the all-time total scanned anyway);
-- - idx_orders_import_status: an import's outcome counts read the import's rows through
--   idx_orders_import (import_id alone, which the foreign key to imports needs);
-- - idx_customers_total_spent: the leaderboard rebuild scans customers.
-- The foreign keys keep their own indexes (idx_orders_customer, idx_order_items_*).
ALTER TABLE orders
    ADD KEY idx_orders_import (import_id),
    DROP KEY idx_orders_import_status,
    DROP KEY idx_orders_status_kpi_date;
ALTER TABLE customers
    DROP KEY idx_customers_total_spent;
