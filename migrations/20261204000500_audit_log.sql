-- The audit log: one row per operator action (CLI or API) with its time, arguments, outcome
-- and actor (`user@host` for the CLI, `api:<token>@<peer>` for the API). Valid on MySQL 8
-- and MariaDB. Written by `oms_shared::store::audit`, read by `producer audit` and
-- `GET /api/audit`.
CREATE TABLE audit_log (
    id        BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    at        DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    action    VARCHAR(64) NOT NULL,
    arguments TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    actor     VARCHAR(255) NOT NULL,
    PRIMARY KEY (id),
    KEY audit_log_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
