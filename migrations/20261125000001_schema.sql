-- oms schema: the SPEC tables plus the bookkeeping the exactly-once workflow needs.
-- Written for both MySQL 8 and MariaDB 10.6+: no RETURNING, no engine-specific syntax.
-- Money is DECIMAL; the application converts to integer cents.

CREATE TABLE products (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    sku            VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    name           VARCHAR(255) NOT NULL,
    price          DECIMAL(12,2) NOT NULL,
    stock_quantity INT NOT NULL,
    created_at     DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at     DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_products_sku (sku),
    CONSTRAINT chk_products_stock CHECK (stock_quantity >= 0),
    CONSTRAINT chk_products_price CHECK (price >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Emails are stored lower-cased; the unique key is what "find or create" relies on.
CREATE TABLE customers (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    email        VARCHAR(254) NOT NULL,
    name         VARCHAR(255) NOT NULL,
    total_spent  DECIMAL(14,2) NOT NULL DEFAULT 0,
    orders_count INT UNSIGNED NOT NULL DEFAULT 0,
    created_at   DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at   DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_customers_email (email),
    KEY idx_customers_total_spent (total_spent)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE imports (
    id                    BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    file_name             VARCHAR(1024) NOT NULL,
    file_sha256           CHAR(64) NOT NULL,
    new_identities        BOOLEAN NOT NULL DEFAULT FALSE,
    status                VARCHAR(16) NOT NULL DEFAULT 'running',
    rows_total            BIGINT UNSIGNED NOT NULL DEFAULT 0,
    rows_enqueued         BIGINT UNSIGNED NOT NULL DEFAULT 0,
    rows_rejected         BIGINT UNSIGNED NOT NULL DEFAULT 0,
    rows_duplicate        BIGINT UNSIGNED NOT NULL DEFAULT 0,
    -- Highest line whose row is on the stream: a re-import of the same file skips up to it.
    enqueued_through_line BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at            DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    finished_at           DATETIME(3) NULL,
    PRIMARY KEY (id),
    KEY idx_imports_sha (file_sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE import_rejects (
    import_id BIGINT UNSIGNED NOT NULL,
    line      BIGINT UNSIGNED NOT NULL,
    reason    VARCHAR(32) NOT NULL,
    detail    VARCHAR(1024) NOT NULL,
    PRIMARY KEY (import_id, line),
    KEY idx_import_rejects_reason (import_id, reason),
    CONSTRAINT fk_import_rejects_import FOREIGN KEY (import_id) REFERENCES imports (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- status moves reserved -> completed | failed, each step committed (see ARCHITECTURE.md).
CREATE TABLE orders (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    identity       VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    import_id      BIGINT UNSIGNED NULL,
    line           BIGINT UNSIGNED NULL,
    customer_id    BIGINT UNSIGNED NOT NULL,
    status         ENUM('pending','reserved','completed','failed') NOT NULL DEFAULT 'pending',
    failure_reason VARCHAR(64) NULL,
    total          DECIMAL(14,2) NOT NULL DEFAULT 0,
    order_date     DATETIME NULL,
    -- The KPI day: order_date's day, else the UTC day the order completed.
    kpi_date       DATE NULL,
    created_at     DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at     DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_orders_identity (identity),
    KEY idx_orders_import_status (import_id, status),
    KEY idx_orders_status_kpi_date (status, kpi_date),
    KEY idx_orders_customer (customer_id),
    CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id),
    CONSTRAINT fk_orders_import FOREIGN KEY (import_id) REFERENCES imports (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- product_id and unit_price are NULL for an unknown sku (the order failed with unknown_sku).
CREATE TABLE order_items (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    order_id   BIGINT UNSIGNED NOT NULL,
    product_id BIGINT UNSIGNED NULL,
    sku        VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    quantity   INT UNSIGNED NOT NULL,
    unit_price DECIMAL(12,2) NULL,
    PRIMARY KEY (id),
    KEY idx_order_items_order (order_id),
    KEY idx_order_items_product (product_id),
    CONSTRAINT fk_order_items_order FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT fk_order_items_product FOREIGN KEY (product_id) REFERENCES products (id),
    CONSTRAINT chk_order_items_quantity CHECK (quantity > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- A row whose identity was already processed under another import (idempotent insert).
CREATE TABLE import_duplicates (
    import_id BIGINT UNSIGNED NOT NULL,
    line      BIGINT UNSIGNED NOT NULL,
    identity  VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    PRIMARY KEY (import_id, line)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Read-model updates committed with the orders they come from, applied to Redis once
-- (guarded by a marker key) and then deleted. See shared/src/read_model.rs.
CREATE TABLE read_model_outbox (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    payload    MEDIUMTEXT NOT NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    KEY idx_outbox_created (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
