#!/usr/bin/env bash
# Re-records TRANSCRIPT.md against a running peer:
#   ./start.sh >/dev/null && ./transcript.sh > TRANSCRIPT.md && ./stop.sh
# The "Other instances" cases start two extra instances (ports $ALT_PORT_1 and $ALT_PORT_2)
# with other settings and stop them again.
set -uo pipefail
cd "$(dirname "$0")"

PORT="${PORT:-3999}"
B="http://127.0.0.1:$PORT"
ALT_PORT_1="${ALT_PORT_1:-4011}"
ALT_PORT_2="${ALT_PORT_2:-4012}"
SHOP='https://shopping.api'
MGMT='https://default.logto.app/api'
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# base64("<form-urlencoded id>:<form-urlencoded secret>") per RFC 6749 §2.3.1
basic_encoded() {
  node -e '
    const enc = (s) => new URLSearchParams({ x: s }).toString().slice(2);
    process.stdout.write(Buffer.from(enc(process.argv[1]) + ":" + enc(process.argv[2])).toString("base64"));
  ' "$1" "$2"
}
# base64("<id>:<secret>") with no encoding (what `curl -u` sends)
basic_raw() { printf '%s:%s' "$1" "$2" | base64 -w0; }

# shell-quote for display: bare when safe, else single quotes
q() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

n=0
# call "title" curl-args...
call() {
  local title="$1"; shift
  n=$((n + 1))
  echo "### $n. $title"
  echo
  echo '```'
  printf '$ curl'
  for a in "$@"; do
    if [[ "$a" == "Authorization: Bearer "* && ${#a} -gt 80 ]]; then
      printf ' %s' "\"Authorization: Bearer \$JWT\""
    else
      printf ' '; q "$a"
    fi
  done
  echo
  local code
  code="$(curl -sS -D "$TMP/h" -o "$TMP/b" -w '%{http_code}' "$@")"
  echo "HTTP $code"
  grep -i -E '^(www-authenticate|content-type|cache-control|logto-core-request-id):' "$TMP/h" | tr -d '\r'
  node -e '
    const fs = require("fs");
    const raw = fs.readFileSync(process.argv[1], "utf8");
    let body;
    try { body = JSON.parse(raw); } catch { console.log(raw === "" ? "(empty body)" : raw); process.exit(0); }
    const show = Array.isArray(body) ? body : { ...body };
    const at = body.access_token;
    if (typeof at === "string" && at.length > 60) show.access_token = at.slice(0, 24) + "...(" + at.length + " chars)";
    console.log(JSON.stringify(show));
    if (typeof at === "string") {
      const parts = at.split(".");
      if (parts.length === 3) {
        const dec = (p) => JSON.parse(Buffer.from(p, "base64url").toString());
        const h = dec(parts[0]); const p = dec(parts[1]);
        console.log("JWT header : " + JSON.stringify(h));
        console.log("JWT payload: " + JSON.stringify(p));
        console.log("  -> sub=" + p.sub + " aud=" + p.aud + " scope=" + (p.scope === undefined ? "(absent)" : JSON.stringify(p.scope)) + " exp=" + p.exp + " (exp-iat=" + (p.exp - p.iat) + "s)");
        fs.writeFileSync(process.argv[2], at);
      } else {
        console.log("(opaque access token, " + at.length + " chars)");
      }
    }
  ' "$TMP/b" "$TMP/last_token"
  echo '```'
  echo
}
token_of() { cat "$TMP/last_token"; }

echo "# What the peer answers: a recorded transcript"
echo
echo "Made by \`./transcript.sh > TRANSCRIPT.md\` against \`./start.sh\` defaults. Access tokens are"
echo "shortened in the token responses; the decoded JWT header and payload follow each one."
echo
echo "Transcript recorded $(date -u +%Y-%m-%dT%H:%M:%SZ) against $B (oidc-provider $(node -p 'require("./node_modules/oidc-provider/package.json").version'), node $(node --version))"
echo

echo "## Successful tokens"
echo
call "m2m-basic, client_secret_basic, shopping API; asks read+write, is granted read only" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" --data-urlencode 'scope=read:products write:products' \
  "$B/oidc/token"
BASIC_SHOP_TOKEN="$(token_of)"

call "m2m-basic, Management API, scope all" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d "resource=$MGMT" -d scope=all \
  "$B/oidc/token"
BASIC_MGMT_TOKEN="$(token_of)"

call "m2m-post, client_secret_post (credentials in the form body)" \
  -d grant_type=client_credentials -d client_id=m2m-post -d client_secret=post-secret-0123456789 \
  -d "resource=$SHOP" --data-urlencode 'scope=read:products write:products' \
  "$B/oidc/token"
POST_SHOP_TOKEN="$(token_of)"

call "m2m-post registered client_secret_post, but authenticating with Basic: accepted" \
  -u 'm2m-post:post-secret-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

call "m2m-basic registered client_secret_basic, but authenticating with client_secret_post: accepted" \
  -d grant_type=client_credentials -d client_id=m2m-basic -d client_secret=basic-secret-0123456789 \
  -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

SPECIAL_SECRET='s3cr:t+/%&= x~'
call "m2m-special, Basic with id and secret form-urlencoded first (RFC 6749 §2.3.1)" \
  -H "Authorization: Basic $(basic_encoded m2m-special "$SPECIAL_SECRET")" \
  -d grant_type=client_credentials -d "resource=$SHOP" --data-urlencode 'scope=read:products write:products' \
  "$B/oidc/token"

call "m2m-special, Basic with the raw secret (no urlencoding; what curl -u sends)" \
  -H "Authorization: Basic $(basic_raw m2m-special "$SPECIAL_SECRET")" \
  -d grant_type=client_credentials -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

call "m2m-special, client_secret_post (body is form-urlencoded anyway)" \
  -d grant_type=client_credentials -d client_id=m2m-special --data-urlencode "client_secret=$SPECIAL_SECRET" \
  -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

call "m2m:colon (colon in client_id), Basic form-urlencoded: m2m%3Acolon:colon%2541%2Bsecret" \
  -H "Authorization: Basic $(basic_encoded 'm2m:colon' 'colon%41+secret')" \
  -d grant_type=client_credentials -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

call "m2m:colon, Basic raw (server splits at the first colon: client_id m2m)" \
  -H "Authorization: Basic $(basic_raw 'm2m:colon' 'colon%41+secret')" \
  -d grant_type=client_credentials -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

call "m2m:colon, Basic with only the id encoded: secret %41 decodes to A and + to space" \
  -H "Authorization: Basic $(printf '%s:%s' 'm2m%3Acolon' 'colon%41+secret' | base64 -w0)" \
  -d grant_type=client_credentials -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

UNICODE_SECRET='sécret-ünïcode'
call "m2m-unicode (non-ASCII secret), client_secret_post: accepted" \
  -d grant_type=client_credentials -d client_id=m2m-unicode --data-urlencode "client_secret=$UNICODE_SECRET" \
  -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

call "m2m-unicode, Basic form-urlencoded: Logto refuses non-ASCII in the Basic header" \
  -H "Authorization: Basic $(basic_encoded m2m-unicode "$UNICODE_SECRET")" \
  -d grant_type=client_credentials -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

call "m2m-basic's second current secret (several secrets per app)" \
  -u 'm2m-basic:basic-secret-next-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

call "m2m-basic's expired secret (Basic; no WWW-Authenticate, no CORS headers)" \
  -u 'm2m-basic:basic-secret-expired-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" \
  "$B/oidc/token"

call "a malformed %-escape in the Basic secret: Logto's URIError, 500" \
  -H "Authorization: Basic $(printf '%s' 'm2m-basic:bad%zz' | base64 -w0)" \
  -d grant_type=client_credentials -d "resource=$SHOP" \
  "$B/oidc/token"

echo "## Scope handling"
echo
call "only a not-granted scope (m2m-basic asks write:products)" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" -d scope=write:products \
  "$B/oidc/token"
NOSCOPE_TOKEN="$(token_of)"

call "scope omitted entirely (m2m-basic)" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" \
  "$B/oidc/token"

call "m2m-noroles (no roles at all) asks read:products" \
  -u 'm2m-noroles:noroles-secret-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

call "scope that the resource does not define, plus openid" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" --data-urlencode 'scope=openid read:products delete:everything' \
  "$B/oidc/token"

echo "## Errors"
echo
call "unknown resource" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d resource=https://unknown.api -d scope=read:products \
  "$B/oidc/token"

call "resource not an absolute URI" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d resource=shopping.api \
  "$B/oidc/token"

call "no resource (and no default API)" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d scope=read:products \
  "$B/oidc/token"

call "no resource, raw error body (?parse_error=false)" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d scope=read:products \
  "$B/oidc/token?parse_error=false"

call "two resources" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" -d "resource=$MGMT" \
  "$B/oidc/token"

call "wrong secret (Basic)" \
  -u 'm2m-basic:wrong-secret' \
  -d grant_type=client_credentials -d "resource=$SHOP" \
  "$B/oidc/token"

call "wrong secret (client_secret_post: no WWW-Authenticate)" \
  -d grant_type=client_credentials -d client_id=m2m-basic -d client_secret=wrong-secret -d "resource=$SHOP" \
  "$B/oidc/token"

call "unknown client" \
  -u 'no-such-app:whatever' \
  -d grant_type=client_credentials -d "resource=$SHOP" \
  "$B/oidc/token"

call "missing grant_type" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

call "unsupported grant_type" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=password -d username=a -d password=b \
  "$B/oidc/token"

call "client without client_credentials in its grant types (web-app)" \
  -u 'web-app:web-secret-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" \
  "$B/oidc/token"

call "credentials both in Basic and in the body" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d client_id=m2m-basic -d client_secret=basic-secret-0123456789 -d "resource=$SHOP" \
  "$B/oidc/token"

call "no client authentication at all" \
  -d grant_type=client_credentials -d "resource=$SHOP" \
  "$B/oidc/token"

call "JSON body instead of a form: taken as a form" \
  -u 'm2m-basic:basic-secret-0123456789' -H 'Content-Type: application/json' \
  --data '{"grant_type":"client_credentials","resource":"https://shopping.api"}' \
  "$B/oidc/token"

printf 'grant_type=client_credentials&resource=https%%3A%%2F%%2Fshopping.api\0' > "$TMP/nul"
call "a NUL byte in the body (the form with a NUL at its end, on stdin)" \
  -u 'm2m-basic:basic-secret-0123456789' --data-binary @- \
  "$B/oidc/token" < "$TMP/nul"

call "GET /oidc/token" \
  "$B/oidc/token"

echo "## Organizations"
echo
call "m2m-basic, organization token for org-acme; asks read+write, is granted read" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d organization_id=org-acme --data-urlencode 'scope=read:members write:members' \
  "$B/oidc/token"
ORG_TOKEN="$(token_of)"

call "m2m-noroles, a member of org-acme without organization roles: scope \"\"" \
  -u 'm2m-noroles:noroles-secret-0123456789' \
  -d grant_type=client_credentials -d organization_id=org-acme -d scope=read:members \
  "$B/oidc/token"

call "m2m-post, not a member of org-acme" \
  -u 'm2m-post:post-secret-0123456789' \
  -d grant_type=client_credentials -d organization_id=org-acme -d scope=read:members \
  "$B/oidc/token"

call "org-acme and the shopping API: the organization roles' API permissions" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d organization_id=org-acme -d "resource=$SHOP" -d scope=read:products \
  "$B/oidc/token"

call "org-acme and the Management API: the app's own role (all) does not count" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d organization_id=org-acme -d "resource=$MGMT" -d scope=all \
  "$B/oidc/token"

echo "## Other instances: plain oidc-provider, short TTL, default API, Logto Cloud's token quota"
echo
PORT="$ALT_PORT_1" LOGTO_COMPAT=0 ACCESS_TOKEN_TTL=1 ./start.sh >/dev/null 2>&1
call "LOGTO_COMPAT=0 (plain oidc-provider): no resource gives an opaque token" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d scope=read:products \
  "http://127.0.0.1:$ALT_PORT_1/oidc/token"
call "ACCESS_TOKEN_TTL=1: token with expires_in 1" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" -d scope=read:products \
  "http://127.0.0.1:$ALT_PORT_1/oidc/token"
SHORT_TOKEN="$(token_of)"
sleep 2
call "the same token at /products 2 s later" \
  -H "Authorization: Bearer $SHORT_TOKEN" "http://127.0.0.1:$ALT_PORT_1/products"
PORT="$ALT_PORT_1" ./stop.sh >/dev/null 2>&1

PORT="$ALT_PORT_2" TOKEN_LIMIT=1 DEFAULT_RESOURCE="$SHOP" ./start.sh >/dev/null 2>&1
call "DEFAULT_RESOURCE=https://shopping.api: no resource parameter gives a token for the default API" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d scope=read:products \
  "http://127.0.0.1:$ALT_PORT_2/oidc/token"
call "TOKEN_LIMIT=1: the next token request (emulated Logto Cloud quota guard)" \
  -u 'm2m-basic:basic-secret-0123456789' \
  -d grant_type=client_credentials -d "resource=$SHOP" \
  "http://127.0.0.1:$ALT_PORT_2/oidc/token"
PORT="$ALT_PORT_2" ./stop.sh >/dev/null 2>&1

echo "## Protected resources"
echo
call "GET /products with m2m-basic's shopping token (read:products)" \
  -H "Authorization: Bearer $BASIC_SHOP_TOKEN" "$B/products"
call "POST /products with the same token (needs write:products)" \
  -X POST -H "Authorization: Bearer $BASIC_SHOP_TOKEN" "$B/products"
call "POST /products with m2m-post's token (read+write)" \
  -X POST -H "Authorization: Bearer $POST_SHOP_TOKEN" "$B/products"
call "GET /products with a shopping token that has no scope" \
  -H "Authorization: Bearer $NOSCOPE_TOKEN" "$B/products"
call "GET /products with the Management API token (wrong audience)" \
  -H "Authorization: Bearer $BASIC_MGMT_TOKEN" "$B/products"
call "GET /products without a token" \
  "$B/products"
call "GET /api/applications with the Management API token" \
  -H "Authorization: Bearer $BASIC_MGMT_TOKEN" "$B/api/applications"
call "GET /api/applications with the shopping token (wrong audience)" \
  -H "Authorization: Bearer $BASIC_SHOP_TOKEN" "$B/api/applications"
call "GET /api/applications without Authorization" \
  "$B/api/applications"
NOROLES_MGMT_TOKEN="$(curl -sS -u 'm2m-noroles:noroles-secret-0123456789' -d grant_type=client_credentials \
  -d "resource=$MGMT" -d scope=all "$B/oidc/token" | node -pe 'JSON.parse(require("fs").readFileSync(0)).access_token')"
call "GET /api/applications with m2m-noroles's Management API token (no scope all)" \
  -H "Authorization: Bearer $NOROLES_MGMT_TOKEN" "$B/api/applications"
call "GET /organizations/org-acme/members with the organization token" \
  -H "Authorization: Bearer $ORG_TOKEN" "$B/organizations/org-acme/members"
call "GET /api/status (Logto's health check)" \
  "$B/api/status"

echo "## Counters (not part of Logto)"
echo
call "GET /__peer/stats" "$B/__peer/stats"
