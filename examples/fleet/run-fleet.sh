#!/usr/bin/env bash
# Three Scribe instances on one PostgreSQL database, each with a data
# directory of its own (as on three machines), listening on 8081-8083;
# put haproxy.cfg or nginx.conf in front of them for one address (8080).
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/scribe OPENAI_API_KEY=sk-... \
#     bash examples/fleet/run-fleet.sh
#
# The database must exist (createdb scribe); each instance runs the
# migrations at start (they are idempotent). Audio is kept in the database
# (SCRIBE_AUDIO_STORE=database, the default on PostgreSQL), so any instance
# can run any job. Ctrl-C stops all three (SIGTERM: each drains its calls).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${DATABASE_URL:?set DATABASE_URL=postgres://...}"
cargo build --release --bin scribe
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in 1 2 3; do
  SCRIBE_LISTEN="127.0.0.1:808$i" SCRIBE_DATA_DIR="./data-fleet/instance-$i" \
    ./target/release/scribe serve &
  pids+=($!)
done
./target/release/scribe users list >/dev/null  # the schema is there
echo "fleet up: 127.0.0.1:8081-8083 (add users with: DATABASE_URL=... scribe users add NAME)"
wait
