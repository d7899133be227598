#!/usr/bin/env bash
# What the webhook fan-out trigger (migrations/…_webhooks.sql) costs per event
# row written to the outbox: trigger off, on without endpoints, on with one
# matching endpoint. Uses its own database, dropped at the end. docs/webhooks.md
# keeps the figures.
#
#   bash scripts/webhook-trigger-cost.sh [rows] [rounds]
set -euo pipefail
rows=${1:-20000}
rounds=${2:-3}
db="verifyd_trigger_cost_$$"
url="postgres://postgres@127.0.0.1:5432/$db"
cd "$(dirname "$0")/.."
bin=${VERIFYD_BIN:-./target/debug/verifyd}
[ -x "$bin" ] || cargo build -q -p verifyd --bin verifyd
psql_() { psql -qAt -h 127.0.0.1 -U postgres "$db" "$@"; }
trap 'psql -qAt -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null' EXIT
VERIFYD_DATABASE__URL=$url "$bin" --config verifyd.dev.toml migrate >/dev/null
psql_ <<'SQL'
INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), 'acme');
CREATE FUNCTION bench(n int) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  FOR i IN 1..n LOOP
    INSERT INTO outbox (target, routing_key, payload) VALUES ('event', 'acme.verification.approved',
      jsonb_build_object('event_id', gen_random_uuid(), 'event', 'verification.approved', 'tenant', 'acme',
        'verification_id', gen_random_uuid(), 'account_id', 'u1'));
  END LOOP;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / n;
END $$;
SQL
echo "µs per event row ($rows rows, $rounds rounds): off | on, no endpoint | on, one endpoint"
for _ in $(seq "$rounds"); do
  psql_ -c "TRUNCATE outbox, webhook_deliveries; DELETE FROM webhook_endpoints; ALTER TABLE outbox DISABLE TRIGGER outbox_webhook_fan_out"
  off=$(psql_ -c "SELECT round(bench($rows)::numeric, 1)")
  psql_ -c "TRUNCATE outbox, webhook_deliveries; ALTER TABLE outbox ENABLE TRIGGER outbox_webhook_fan_out"
  none=$(psql_ -c "SELECT round(bench($rows)::numeric, 1)")
  psql_ -c "TRUNCATE outbox, webhook_deliveries; INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, secret_sealed)
            SELECT gen_random_uuid(), id, 'https://hooks.example.com/', ARRAY['*'], '\x00' FROM tenants"
  one=$(psql_ -c "SELECT round(bench($rows)::numeric, 1)")
  echo "$off | $none | $one"
done
