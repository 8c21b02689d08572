-- Per-import order counters (issue 22): how many of an import's orders are in each status
-- (and failure reason), the revenue of its completed ones, and when one last became
-- terminal. The reserve and settle transactions change them in the same transaction as
-- the orders' status (guarded as those are), so `status IMPORT`, `import --wait` and
-- `/api/imports/{id}` read a few rows per poll instead of the import's orders.
-- `reason` is '' when there is none. Each transaction writes its changes to one of 8
-- shards (chosen at random; readers sum them), so the reserve and settle transactions of
-- concurrent batches of one import rarely wait for each other's counter rows until commit.
-- Valid on MySQL 8 and MariaDB; the backfill scans
-- orders once (run `producer migrate` before starting consumers of this release).
CREATE TABLE import_progress (
    import_id        BIGINT UNSIGNED NOT NULL,
    status           VARCHAR(16)     NOT NULL,
    reason           VARCHAR(64)     NOT NULL,
    shard            TINYINT UNSIGNED NOT NULL,
    orders           BIGINT          NOT NULL,
    revenue_cents    BIGINT          NOT NULL,
    last_terminal_at DATETIME(3)     NULL,
    PRIMARY KEY (import_id, status, reason, shard)
) ENGINE = InnoDB;

INSERT INTO import_progress (import_id, status, reason, shard, orders, revenue_cents, last_terminal_at)
SELECT import_id, CAST(status AS CHAR), COALESCE(failure_reason, ''), 0, COUNT(*),
       IF(status = 'completed', CAST(SUM(total) * 100 AS SIGNED), 0),
       IF(status IN ('completed', 'failed'), MAX(updated_at), NULL)
FROM orders
WHERE import_id IS NOT NULL
GROUP BY import_id, status, failure_reason;
