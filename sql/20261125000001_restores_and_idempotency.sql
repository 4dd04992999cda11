-- Every step after a commit is redone until it is done (issue 10).
-- `unit_restored`: the unit of a cancelled or failed purchase is back in Redis' stock. Set after
-- the restore; until then the scheduled sweep (outbox-retry) redoes the restore, which is
-- idempotent (Redis' `restored` set). Rows from before this column are restored once more,
-- which the set makes harmless.
ALTER TABLE orders
    ADD COLUMN unit_restored TINYINT(1) NOT NULL DEFAULT 0,
    ADD KEY orders_to_restore (status, unit_restored),
    ADD KEY orders_overdue (status, pay_by);

-- A dead letter without an order row (the buyer already had another order for the activity)
-- carries its own flag; one with a `failed` order row is tracked on that row.
ALTER TABLE dead_letters
    ADD COLUMN unit_restored TINYINT(1) NOT NULL DEFAULT 0,
    ADD KEY dead_letters_to_restore (unit_restored);

-- Admin creates are idempotent under retry: a request carrying an `Idempotency-Key` header
-- that was already used returns the row it created instead of creating another.
ALTER TABLE products ADD COLUMN idempotency_key VARCHAR(100) NULL, ADD UNIQUE KEY products_idempotency (idempotency_key);
ALTER TABLE activities ADD COLUMN idempotency_key VARCHAR(100) NULL, ADD UNIQUE KEY activities_idempotency (idempotency_key);
