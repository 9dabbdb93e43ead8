\set n random(1, 1000000000)
BEGIN;
WITH e AS (INSERT INTO events (id, environment, dedup_key, event_type, event, raw_body, webhook_id, secret_index, signed_timestamp) VALUES (gen_random_uuid(), 'production', sha256(convert_to(:n::text || clock_timestamp()::text || random()::text, 'UTF8')), 'receive', 'completed', convert_to(repeat('x', 1500), 'UTF8'), gen_random_uuid(), 0, 1) RETURNING id) INSERT INTO deliveries (event_id, handler) SELECT id, 'audit' FROM e;
COMMIT;
