-- Retention (issue 22): `producer archive --before DATE` moves terminal orders (completed,
-- failed) whose KPI day is before DATE, with their items, out of `orders` / `order_items`
-- in short batches (see shared/src/store/archive.rs). What stays in MySQL keeps every
-- read model and check exact without the rows:
-- - `archived_orders`: one identity-level row per archived order, so a redelivered or
--   re-imported archived order is recognised (the reserve step looks identities up here
--   after `orders`) and `recover`, `reconcile --deep` and the tests' invariant checker
--   still count it (import and line, customer, status and reason, total, KPI day). Its
--   `id` is the order's id in `orders`, which the archive file carries too.
-- - `archived_product_sales`: units and revenue of archived *completed* orders per KPI day
--   and product, so "initial stock − units sold = stock" still adds up (and sales per
--   product per day survive the items).
-- `kpi_days`, `customers` and `import_progress` are not touched by archiving: they already
-- hold the archived orders' sums. The index on `orders.kpi_date` lets each batch find its
-- orders without a scan (it moves once per order, when the order ends; see
-- docs/performance.md). Valid on MySQL 8 and MariaDB.
CREATE TABLE archived_orders (
    id             BIGINT UNSIGNED NOT NULL,
    identity       VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    import_id      BIGINT UNSIGNED NULL,
    line           BIGINT UNSIGNED NULL,
    customer_id    BIGINT UNSIGNED NOT NULL,
    status         VARCHAR(16) NOT NULL,
    failure_reason VARCHAR(64) NULL,
    total          DECIMAL(14,2) NOT NULL,
    kpi_date       DATE NOT NULL,
    archived_at    DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_archived_orders_identity (identity),
    KEY idx_archived_orders_import_line (import_id, line),
    KEY idx_archived_orders_customer (customer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE archived_product_sales (
    kpi_date      DATE            NOT NULL,
    product_id    BIGINT UNSIGNED NOT NULL,
    units         BIGINT UNSIGNED NOT NULL,
    revenue_cents BIGINT          NOT NULL,
    PRIMARY KEY (kpi_date, product_id),
    KEY idx_archived_product_sales_product (product_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

ALTER TABLE orders ADD KEY idx_orders_kpi_date (kpi_date);
