#!/usr/bin/env bash
# The main job against a local Logto-like server, on a fresh machine:
#   ./examples/local_peer.sh
# starts the test peer (tests/peer: oidc-provider configured like Logto; `npm ci` on first
# use) on 127.0.0.1, runs the get_token example with a demo app's credentials, prints the
# token, and stops the peer again. Extra arguments go to `cargo run`.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-3999}"
export PORT
PID="$(tests/peer/start.sh)"
trap 'tests/peer/stop.sh "$PID" 2>/dev/null || true' EXIT

LOGTO_ENDPOINT="http://127.0.0.1:$PORT" \
LOGTO_APP_ID=m2m-basic \
LOGTO_APP_SECRET=basic-secret-0123456789 \
LOGTO_RESOURCE=https://shopping.api \
LOGTO_SCOPES=read:products \
  cargo run -q "$@" --example get_token
