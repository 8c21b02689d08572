-- Recovery when a store loses or rewinds state (ARCHITECTURE.md "When a store loses state").
-- Valid on MySQL 8 and MariaDB.
--
-- imports.resumed_after_line: the lines this import covers start after it (an import that
-- resumes an earlier one of the same file skips the lines that one enqueued), so
-- `producer recover` knows which lines of the file are this import's.
-- imports.heartbeat_at: a running import touches it every few seconds; `migrate
-- --partitions` refuses while an import's heartbeat is fresh (its rows would go to a key
-- nobody reads), and treats a running import without a fresh heartbeat as abandoned.
ALTER TABLE imports
    ADD COLUMN resumed_after_line BIGINT UNSIGNED NOT NULL DEFAULT 0,
    ADD COLUMN heartbeat_at DATETIME(3) NULL;

-- Rows that ended dead-lettered, recorded by the consumer before it acknowledges the entry
-- (so a row is counted dead once, whatever `failed purge` later does to the dead-letter
-- stream). `failed retry` deletes the record of a row it puts back on the stream.
CREATE TABLE dead_lettered_rows (
    import_id  BIGINT UNSIGNED NOT NULL,
    line       BIGINT UNSIGNED NOT NULL,
    identity   VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (import_id, line)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The partition count always has a row: `migrate --partitions` and a starting import
-- lock it (FOR UPDATE / LOCK IN SHARE MODE), so an import is created either before a
-- repartition's check (which then refuses) or after the change (and uses it).
INSERT IGNORE INTO settings (name, value) VALUES ('stream_partitions', '1');
