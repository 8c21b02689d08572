-- Per-day KPI sums (issue 22, "A year of orders"). The settle transaction adds each
-- batch's completed orders to their KPI day's row, in the same transaction as their status
-- change and their outbox row, so the table always equals
--   SELECT kpi_date, COUNT(*), SUM(total) FROM orders WHERE status = 'completed' GROUP BY kpi_date
-- (`producer reconcile --deep` checks it). `kpis generate` and `reconcile` read the day,
-- month, year and total from here instead of scanning orders; an order's row is never read.
-- Valid on MySQL 8 and MariaDB. The backfill scans orders once: run `producer migrate`
-- before starting consumers of this release, as for every migration.
CREATE TABLE kpi_days (
    kpi_date      DATE            NOT NULL PRIMARY KEY,
    order_count   BIGINT UNSIGNED NOT NULL,
    revenue_cents BIGINT          NOT NULL
) ENGINE = InnoDB;

INSERT INTO kpi_days (kpi_date, order_count, revenue_cents)
SELECT kpi_date, COUNT(*), CAST(SUM(total) * 100 AS SIGNED)
FROM orders
WHERE status = 'completed' AND kpi_date IS NOT NULL
GROUP BY kpi_date;
