#!/usr/bin/env bash
# The long fault run: steady load while the provider fails (500s, 429s,
# timeouts), RabbitMQ restarts and PostgreSQL restarts; then every accepted
# verification must have exactly one final delivery outcome. It restarts the
# local RabbitMQ and PostgreSQL, so it is not part of the test suite (the fast
# fault tests are: tests/api/faults.rs); the README's test command runs it
# after the suite, alone. Results: docs/faults.md.
#
# Needs: PostgreSQL and RabbitMQ running locally as for the tests, and the
# rights to restart them (pg_ctlcluster, rabbitmqctl, rabbitmq-server).
set -euo pipefail
cd "$(dirname "$0")/.."
# Same package selection as the suite, so nothing is rebuilt.
cargo test --workspace --locked --test api -- --ignored --nocapture --test-threads=1 soak 2>&1 \
    | grep -E '^\[|^SOAK|^test |test result|panicked'
