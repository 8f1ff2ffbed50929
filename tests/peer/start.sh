#!/usr/bin/env bash
# Start the oidc-provider peer on 127.0.0.1:$PORT (default 3999) in the background.
# Installs node_modules first if they are missing. Prints the server PID on stdout
# (everything else goes to stderr), so `PID=$(./start.sh)` works.
# Env passed through to server.mjs: PORT, LOGTO_COMPAT, DEFAULT_RESOURCE,
# ACCESS_TOKEN_TTL, TOKEN_LIMIT, KEY_FILE, TLS_CERT, TLS_KEY (HTTPS; the probe
# below then trusts tls/ca.pem, the test CA).
set -euo pipefail
cd "$(dirname "$0")"

PORT="${PORT:-3999}"
export PORT
# Our stdin is /dev/null, at EOF from the start: the server would exit at once.
unset PEER_EXIT_ON_STDIN_EOF
RUN_DIR=".run"
PID_FILE="$RUN_DIR/server-$PORT.pid"
LOG_FILE="$RUN_DIR/server-$PORT.log"
SCHEME=http
[ -n "${TLS_CERT:-}" ] && SCHEME=https
URL="$SCHEME://127.0.0.1:$PORT/oidc/.well-known/openid-configuration"

command -v node >/dev/null || { echo "node not found" >&2; exit 1; }

if [ ! -f node_modules/oidc-provider/package.json ] || [ ! -f node_modules/koa-mount/package.json ]; then
  echo "installing dependencies..." >&2
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund >&2
  else
    npm install --no-audit --no-fund >&2
  fi
fi

mkdir -p "$RUN_DIR"
if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  echo "already running on port $PORT" >&2
  cat "$PID_FILE"
  exit 0
fi

# Something else on the port (another server, a peer started by hand): node would die with
# EADDRINUSE and, worse, the probe below could get an answer from that other program.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }
busy_message="port $PORT is busy: another program listens on 127.0.0.1:$PORT; choose a free port with PORT=<port>"
if port_busy; then
  echo "$busy_message" >&2
  exit 1
fi

# oidc-provider warns "Unsupported runtime" on any Node before the 22 LTS line. The peer is
# tested on Node 20.19 and newer, where it works: the log says so first, so that the
# warning does not read as the cause of a failure.
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
  echo "start.sh: node $(node --version): the \"Unsupported runtime\" warning that follows is expected before Node 22; the peer works on Node 20.19 and newer" >"$LOG_FILE"
else
  : >"$LOG_FILE"
fi
nohup node server.mjs >>"$LOG_FILE" 2>&1 </dev/null &
PID=$!
echo "$PID" >"$PID_FILE"

probe() {
  if command -v curl >/dev/null; then
    curl -fsS --cacert tls/ca.pem -o /dev/null "$URL" 2>/dev/null
  else
    NODE_EXTRA_CA_CERTS=tls/ca.pem \
      node -e "fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" "$URL"
  fi
}

for _ in $(seq 1 100); do
  # Alive first: an answer is only ours while our server runs.
  if kill -0 "$PID" 2>/dev/null && probe; then
    echo "peer up: issuer $SCHEME://127.0.0.1:$PORT/oidc (log: $PWD/$LOG_FILE)" >&2
    echo "$PID"
    exit 0
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    if grep -q EADDRINUSE "$LOG_FILE"; then
      echo "$busy_message" >&2
    else
      echo "server exited during startup; log follows:" >&2
      cat "$LOG_FILE" >&2
    fi
    rm -f "$PID_FILE"
    exit 1
  fi
  sleep 0.2
done

echo "server did not answer $URL within 20 s; stopping it" >&2
kill "$PID" 2>/dev/null || true
rm -f "$PID_FILE"
exit 1
