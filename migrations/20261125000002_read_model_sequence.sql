-- Outbox ids in commit order, without gaps (see shared/src/store/outbox.rs): the settle
-- transaction takes the next id from this one row as its last statement, so the row lock
-- orders the commits. Redis then remembers applied outbox rows as "every id up to N" plus
-- the few applied above N, and a rebuild knows exactly which rows its MySQL snapshot holds.
-- Valid on MySQL 8 and MariaDB.
CREATE TABLE read_model_sequence (
    id      TINYINT UNSIGNED NOT NULL,
    last_id BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO read_model_sequence (id, last_id)
SELECT 1, COALESCE(MAX(id), 0) FROM read_model_outbox;
