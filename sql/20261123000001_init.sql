-- The sale's durable state. Redis holds the hot copy during a sale; these tables are the record.
-- Times are UTC (sqlx sets the session time zone to +00:00), DATETIME(3) for millisecond order.

CREATE TABLE products (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        VARCHAR(200)    NOT NULL,
    description TEXT            NOT NULL,
    price_cents BIGINT          NOT NULL,
    image_url   VARCHAR(1000)   NOT NULL DEFAULT '',
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    CONSTRAINT products_price_not_negative CHECK (price_cents >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One product on sale. stock = -1 means unlimited (the seed's convention).
CREATE TABLE activities (
    id                 BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    product_id         BIGINT UNSIGNED NOT NULL,
    stock              BIGINT          NOT NULL,
    starts_at          DATETIME(3)     NOT NULL,
    ends_at            DATETIME(3)     NOT NULL,
    rate_limit_per_sec INT             NOT NULL,
    burst              INT             NOT NULL,
    per_user_per_min   INT             NOT NULL DEFAULT 5,
    created_at         DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY activities_by_product (product_id, starts_at),
    CONSTRAINT activities_product FOREIGN KEY (product_id) REFERENCES products (id),
    CONSTRAINT activities_stock CHECK (stock >= -1),
    CONSTRAINT activities_window CHECK (ends_at > starts_at),
    CONSTRAINT activities_limits CHECK (rate_limit_per_sec > 0 AND burst > 0 AND per_user_per_min > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- An order exists only for a buyer who got a unit. `receipt` is the message's identity: the
-- consumer's batch insert is idempotent on it (ON DUPLICATE KEY UPDATE in one transaction), so
-- it plays the part of the seed's processed-message table without a second write.
-- `failed` is a purchase whose message was dead-lettered after the retry cap: the same unique
-- receipt decides, once, whether the consumer's order or the dead letter came first.
CREATE TABLE orders (
    id           BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    receipt      VARCHAR(255)    NOT NULL,
    activity_id  BIGINT UNSIGNED NOT NULL,
    product_id   BIGINT UNSIGNED NOT NULL,
    user_id      VARCHAR(128)    NOT NULL,
    status       ENUM ('pending_payment', 'paid', 'cancelled', 'failed') NOT NULL DEFAULT 'pending_payment',
    price_cents  BIGINT          NOT NULL,
    created_at   DATETIME(3)     NOT NULL,
    pay_by       DATETIME(3)     NOT NULL,
    paid_at      DATETIME(3)     NULL,
    cancelled_at DATETIME(3)     NULL,
    inserted_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    UNIQUE KEY orders_receipt (receipt),
    UNIQUE KEY orders_one_per_user (activity_id, user_id),
    KEY orders_by_activity_status (activity_id, status, id),
    CONSTRAINT orders_activity FOREIGN KEY (activity_id) REFERENCES activities (id),
    CONSTRAINT orders_paid_or_cancelled CHECK (paid_at IS NULL OR cancelled_at IS NULL)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Why a purchase failed: the message and cause, for an operator (its `failed` order row is
-- written in the same transaction).
CREATE TABLE dead_letters (
    receipt     VARCHAR(255)    NOT NULL PRIMARY KEY,
    activity_id BIGINT UNSIGNED NOT NULL,
    product_id  BIGINT UNSIGNED NOT NULL,
    user_id     VARCHAR(128)    NOT NULL,
    payload     TEXT            NOT NULL,
    reason      VARCHAR(500)    NOT NULL,
    attempts    INT             NOT NULL,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY dead_letters_by_activity (activity_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
