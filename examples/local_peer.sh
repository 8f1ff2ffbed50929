#!/usr/bin/env bash
# The main job against a local Logto-like server, on a fresh machine:
#   ./examples/local_peer.sh              (another port: PORT=4000 ./examples/local_peer.sh)
# builds the get_token example, starts the test peer (tests/peer: oidc-provider configured
# like Logto; `npm ci` on first use) on 127.0.0.1:$PORT (default 3999), runs get_token with
# a demo app's credentials, prints the token on stdout, and stops the peer again. A peer
# that tests/peer/start.sh already runs on that port is used and left running: this stops
# only what it started. What it is doing goes to stderr. Extra arguments go to `cargo`.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-3999}"
export PORT
say() { printf 'local_peer.sh: %s\n' "$*" >&2; }

# The port first, before a build that can take minutes.
PID_FILE="tests/peer/.run/server-$PORT.pid"
if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  RUNNING="$(cat "$PID_FILE")"
elif (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  say "port $PORT is busy: another program listens on 127.0.0.1:$PORT; run with a free one, e.g. PORT=4000 $0"
  exit 1
else
  RUNNING=""
fi

# Before the server starts, so that nothing runs yet if it fails, and with cargo's
# progress: on a fresh clone this is the long step.
say "building the get_token example (the first build takes a minute or two)"
cargo build "$@" --example get_token

if [ -n "$RUNNING" ]; then
  say "using the test peer already running on 127.0.0.1:$PORT (pid $RUNNING); it is left running"
else
  if [ -f tests/peer/node_modules/oidc-provider/package.json ]; then
    say "starting the test peer on 127.0.0.1:$PORT"
  else
    say "starting the test peer on 127.0.0.1:$PORT (first run: npm ci installs its packages)"
  fi
  PID="$(tests/peer/start.sh)" || {
    say "the test peer did not start (see above); another port: PORT=4000 $0"
    exit 1
  }
  trap 'tests/peer/stop.sh "$PID" 2>/dev/null || true' EXIT
fi

say "running get_token against http://127.0.0.1:$PORT"
# Only the demo app's settings: variables from a shell set up for a real tenant (the
# README) would otherwise mix in.
env -u LOGTO_TOKEN_URL -u LOGTO_AUTH_METHOD -u LOGTO_TIMEOUT -u LOGTO_CACHE_FILE -u LOGTO_CACHE_URL \
  LOGTO_ENDPOINT="http://127.0.0.1:$PORT" \
  LOGTO_APP_ID=m2m-basic \
  LOGTO_APP_SECRET=basic-secret-0123456789 \
  LOGTO_RESOURCE=https://shopping.api \
  LOGTO_SCOPES=read:products \
  cargo run -q "$@" --example get_token
