"""A client_credentials token endpoint built on Authlib, for the integration tests.

Client authentication, scope narrowing, error answers and the JWT access tokens are
Authlib's own code (authlib.oauth2.rfc6749 with its ClientCredentialsGrant, and
authlib.oauth2.rfc9068's JWTBearerTokenGenerator); this file only supplies what Authlib
leaves to a framework integration (the HTTP server, the request wrapper, the client
registry), using Python's http.server so that Authlib and its own dependencies are all
it needs. See README.md beside it for the clients, scopes and endpoints.

    python server.py [--port N] [--token-format jwt|opaque]

Binds 127.0.0.1 only. The port comes from --port, else $PORT, else 4600. Once it holds
the port it prints one line on stdout: `authlib-server ready http://127.0.0.1:PORT/token`.
With AUTHLIB_EXIT_ON_STDIN_EOF=1 it exits when its stdin ends (the Rust harness sets it
and never writes to the pipe, so a test process that dies leaves no server behind).
"""

import argparse
import json
import os
import secrets
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import authlib
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Request
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import list_to_scope, scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc.jwk import OctKey

TOKEN_PATH = "/token"
# Every scope this server knows; asking for any other is Authlib's invalid_scope.
SCOPES_SUPPORTED = ["reports:read", "reports:write", "admin:all"]


BOTH = ("client_secret_basic", "client_secret_post")


class Client(ClientMixin):
    """One registered client: what Authlib's ClientMixin asks of a client model."""

    def __init__(self, client_id, client_secret, scope, auth_methods=BOTH):
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.auth_methods = auth_methods

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        # Authlib's documented implementation (ClientMixin.get_allowed_scope, and
        # authlib.integrations.sqla_oauth2's OAuth2ClientMixin): the requested scopes
        # the client has, "" when it has none of them or asked for none.
        if not scope:
            return ""
        allowed = set(scope_to_list(self.scope))
        return list_to_scope([s for s in scope.split() if s in allowed])

    def check_redirect_uri(self, redirect_uri):
        return False

    def check_client_secret(self, client_secret):
        # Authlib's own (authlib.integrations.sqla_oauth2.OAuth2ClientMixin). It raises
        # TypeError for a non-ASCII str, which the handler answers with a 500 as a
        # framework would.
        return secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        # Authlib's models hold one token_endpoint_auth_method (RFC 7591); a set here lets
        # one client take both, as the tests need.
        if endpoint == "token":
            return method in self.auth_methods
        return True

    def check_response_type(self, response_type):
        return False

    def check_grant_type(self, grant_type):
        return grant_type == "client_credentials"


# The clients; README.md lists them too, and tests/common/authlib.rs has them as constants.
CLIENTS = {
    c.client_id: c
    for c in [
        # All three scopes; Basic or post.
        Client("m2m-plain", "plain-secret-0123456789", "reports:read reports:write admin:all"),
        # Spaces and other characters that must be encoded in a Basic header.
        Client("m2m spaced:app+1", "s3 cr:t+/%41&= x~", "reports:read reports:write"),
        # A non-ASCII id (percent-encoded UTF-8 in a Basic header), an ASCII secret.
        Client("m2m-\u00fcn\u00ef", "unicode-id-secret 0123", "reports:read"),
        # A non-ASCII secret: Authlib's stock check_client_secret raises on it (a 500).
        Client("m2m-unicode-secret", "s\u00e9cret-\u00fcn\u00ef", "reports:read"),
        # Registered client_secret_post only: a Basic request gets invalid_client.
        Client("m2m-post-only", "post-only-secret-0123456789", "reports:read reports:write",
               ("client_secret_post",)),
        # Only reports:read: asking for reports:write alone grants nothing.
        Client("m2m-reader", "reader-secret-0123456789", "reports:read"),
    ]
}


class StdlibOAuth2Request(OAuth2Request):
    """What authlib.integrations.flask_oauth2.FlaskOAuth2Request does, for http.server:
    the form body parsed as application/x-www-form-urlencoded (`+` is a space)."""

    def __init__(self, method, uri, headers, form):
        super().__init__(method=method, uri=uri, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def args(self):
        return {}

    @property
    def form(self):
        return self._form


class Server(AuthorizationServer):
    def __init__(self):
        super().__init__(scopes_supported=SCOPES_SUPPORTED)

    def query_client(self, client_id):
        return CLIENTS.get(client_id)

    def save_token(self, token, request):
        pass

    def send_signal(self, name, *args, **kwargs):
        pass

    def create_oauth2_request(self, request):
        return request

    def handle_response(self, status, body, headers):
        if isinstance(body, dict):
            body = json.dumps(body)
        return status, body, headers


class M2MClientCredentialsGrant(ClientCredentialsGrant):
    # Authlib's default is client_secret_basic alone; Authlib's docs add post like this.
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class JWTTokens(JWTBearerTokenGenerator):
    """RFC 9068 JWT access tokens, HS256 with a key made at start (nothing verifies them
    but the tests, which only read the payload)."""

    def __init__(self, issuer):
        super().__init__(issuer=issuer, alg="HS256")
        self.key = OctKey.generate_key(256)

    def get_jwks(self):
        return self.key


def opaque_tokens():
    # What Authlib's Flask integration makes by default: 42 random characters.
    return BearerTokenGenerator(lambda **_: generate_token(42))


# werkzeug's InternalServerError page, as Flask sends it.
INTERNAL_ERROR_PAGE = (
    "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
    "<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was "
    "unable to complete your request. Either the server is overloaded or there is an "
    "error in the application.</p>\n"
)


class Recorder:
    """What the token endpoint received, for the tests: GET /__authlib/requests."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []

    def add(self, entry):
        with self.lock:
            self.requests.append(entry)

    def dump(self):
        with self.lock:
            return json.dumps({"requests": self.requests})

    def reset(self):
        with self.lock:
            self.requests.clear()


def basic_user_as_sent(headers):
    """The user part of a Basic header before Authlib percent-decodes it, e.g.
    `m2m%20spaced%3Aapp%2B1`: how the client encoded the id on the wire."""
    import base64
    import binascii

    auth = headers.get("Authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip()).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return "(not base64)"
    return decoded.split(":", 1)[0]


def make_handler(server, recorder, base_url):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "authlib-test-server"

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

        def send(self, status, body, headers):
            data = body.encode("utf-8") if isinstance(body, str) else body
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = urlsplit(self.path).path
            if path == "/__authlib/health":
                body = json.dumps({"ok": True, "authlib": authlib.__version__})
                self.send(200, body, [("Content-Type", "application/json")])
            elif path == "/__authlib/requests":
                self.send(200, recorder.dump(), [("Content-Type", "application/json")])
            elif path == TOKEN_PATH:
                # As Flask answers a POST-only route.
                self.send(405, "", [("Allow", "POST")])
            else:
                self.send(404, "", [])

        def do_POST(self):
            path = urlsplit(self.path).path
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if path == "/__authlib/reset":
                recorder.reset()
                self.send(204, "", [])
                return
            if path != TOKEN_PATH:
                self.send(404, "", [])
                return
            # As werkzeug reads a form: UTF-8, `+` as a space, the first of repeated names.
            parsed = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
            form = {k: v[0] for k, v in parsed.items()}
            request = StdlibOAuth2Request("POST", base_url + self.path, self.headers, form)
            try:
                status, body, headers = server.create_token_response(request)
            except Exception:
                # What Flask (werkzeug) answers for an exception in a view.
                traceback.print_exc()
                status, body, headers = 500, INTERNAL_ERROR_PAGE, [
                    ("Content-Type", "text/html; charset=utf-8")]
            recorder.add({
                "status": status,
                "basic_user": basic_user_as_sent(self.headers),
                "form": {k: ("[secret]" if k == "client_secret" else v)
                         for k, v in form.items()},
                "content_type": self.headers.get("Content-Type"),
            })
            self.send(status, body, headers)

    return Handler


def exit_on_stdin_eof():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "4600")))
    parser.add_argument("--token-format", choices=["jwt", "opaque"], default="jwt")
    args = parser.parse_args()

    if os.environ.get("AUTHLIB_EXIT_ON_STDIN_EOF") == "1":
        threading.Thread(target=exit_on_stdin_eof, daemon=True).start()

    base_url = f"http://127.0.0.1:{args.port}"
    server = Server()
    server.register_grant(M2MClientCredentialsGrant)
    if args.token_format == "jwt":
        server.register_token_generator("default", JWTTokens(issuer=base_url))
    else:
        server.register_token_generator("default", opaque_tokens())

    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", args.port),
                                    make_handler(server, Recorder(), base_url))
    except OSError as e:
        print(f"authlib-server: cannot listen on 127.0.0.1:{args.port}: {e}", file=sys.stderr,
              flush=True)
        sys.exit(1)
    httpd.daemon_threads = True
    print(f"authlib-server ready {base_url}{TOKEN_PATH} authlib={authlib.__version__} "
          f"tokens={args.token_format}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
