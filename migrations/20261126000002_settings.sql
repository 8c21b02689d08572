-- Properties of the deployment that every producer and consumer must agree on, recorded
-- by `producer migrate` (see shared/src/store/settings.rs). `stream_partitions`: how many
-- partitions the orders stream is split into (`producer migrate --partitions P`; no row
-- means 1). Valid on MySQL 8 and MariaDB.
CREATE TABLE settings (
    name       VARCHAR(64)  NOT NULL,
    value      VARCHAR(255) NOT NULL,
    updated_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
