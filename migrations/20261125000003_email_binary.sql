-- One meaning of "same customer": emails compare byte for byte. The application stores
-- them lower-cased (oms_shared::order_rules::normalize_email); utf8mb4_unicode_ci also
-- folded accents, widths, ß/ss, ignorable characters and emoji, so two rows Rust kept
-- apart collided on the unique key. utf8mb4_bin exists on MySQL 8 and MariaDB alike; it
-- is finer than the old collation, so existing rows cannot collide when converted.
ALTER TABLE customers
    MODIFY email VARCHAR(254) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
