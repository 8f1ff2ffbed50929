"""Hostile access tokens for tests/verifier_hostile.rs, made with Python's `cryptography`
(the tests' venv, tests/authlib/requirements.txt), by another hand than the verifier's.

usage: python hostile.py <issuer> <audience> <now>

Prints the JWKS the verifier should trust on the first line, then one case a line:
`name<TAB>expected<TAB>token`, where expected is `ok` or a word the refusal must contain.
"""

import base64
import json
import sys

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

issuer, audience, now = sys.argv[1], sys.argv[2], int(sys.argv[3])


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def num(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return b64(n.to_bytes(size, "big"))


CURVES = {"P-256": (ec.SECP256R1, hashes.SHA256, 32), "P-384": (ec.SECP384R1, hashes.SHA384, 48),
          "P-521": (ec.SECP521R1, hashes.SHA512, 66)}


def ec_key(crv):
    return ec.generate_private_key(CURVES[crv][0]())


def ec_jwk(key, crv, kid, alg=None, use="sig"):
    pub = key.public_key().public_numbers()
    size = CURVES[crv][2]
    jwk = {"kty": "EC", "crv": crv, "x": num(pub.x, size), "y": num(pub.y, size), "kid": kid}
    if alg:
        jwk["alg"] = alg
    if use:
        jwk["use"] = use
    return jwk


def rsa_jwk(key, kid):
    pub = key.public_key().public_numbers()
    return {"kty": "RSA", "n": num(pub.n), "e": num(pub.e), "kid": kid, "use": "sig"}


def ec_sign(key, crv, data, der=False):
    sig = key.sign(data, ec.ECDSA(CURVES[crv][1]()))
    if der:
        return sig
    r, s = decode_dss_signature(sig)
    size = CURVES[crv][2]
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def claims(**over):
    c = {"jti": "j", "sub": "app", "client_id": "app", "iat": now, "exp": now + 3600,
         "scope": "read:products", "iss": issuer, "aud": audience}
    c.update(over)
    return c


def token(header, payload, signer):
    return token_raw(header, json.dumps(payload), signer)


def token_raw(header, payload_text, signer):
    """A token whose payload is this exact text (a dict can't hold a name twice)."""
    data = (b64(json.dumps(header)) + "." + b64(payload_text)).encode()
    return data.decode() + "." + b64(signer(data))


def twice(name, first, second):
    """The usual claims, then `name` again: json.dumps keeps both in the text."""
    text = json.dumps(claims(**{name: first}))
    return text[:-1] + ", " + json.dumps(name) + ": " + json.dumps(second) + "}"


def es384_high_s(data):
    """An ES384 signature whose S is above n / 2, as signers that don't normalize S make."""
    n = int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
            "581a0db248b0a77aecec196accc52973", 16)  # P-384's order
    r, s = decode_dss_signature(ec384.sign(data, ec.ECDSA(hashes.SHA384())))
    if s <= n // 2:
        s = n - s
    return r.to_bytes(48, "big") + s.to_bytes(48, "big")


ec384, ec256, p521, enc = ec_key("P-384"), ec_key("P-256"), ec_key("P-521"), ec_key("P-384")
attacker = ec_key("P-384")
rsa2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
jwks = {"keys": [ec_jwk(ec384, "P-384", "ec", "ES384"), ec_jwk(ec256, "P-256", "p256"),
                 ec_jwk(p521, "P-521", "p521", "ES512"), ec_jwk(enc, "P-384", "enc", use="enc"),
                 rsa_jwk(rsa2048, "rsa"), rsa_jwk(rsa1024, "rsa-small")]}
print(json.dumps(jwks))


def hdr(alg, kid, **over):
    h = {"alg": alg, "typ": "at+jwt", "kid": kid}
    h.update(over)
    return h


def es384(data):
    return ec_sign(ec384, "P-384", data)


def pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def hs256_with(secret):
    def sign(data):
        h = hmac.HMAC(secret, hashes.SHA256())
        h.update(data)
        return h.finalize()
    return sign


def rs(alg_padding, h):
    return lambda data: rsa2048.sign(data, alg_padding, h)


pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
good = claims()
cases = [
    ("good_es384", "ok", token(hdr("ES384", "ec"), good, es384)),
    ("good_es256", "ok", token(hdr("ES256", "p256"), good, lambda d: ec_sign(ec256, "P-256", d))),
    ("good_rs256_key_without_alg", "ok", token(hdr("RS256", "rsa"), good, rs(padding.PKCS1v15(), hashes.SHA256()))),
    ("good_ps256", "ok", token(hdr("PS256", "rsa"), good, rs(pss, hashes.SHA256()))),
    ("good_typ_application", "ok", token(hdr("ES384", "ec", typ="application/at+jwt"), good, es384)),
    ("good_aud_array", "ok", token(hdr("ES384", "ec"), claims(aud=["https://x", audience]), es384)),
    ("alg_none", "none", token(hdr("none", "ec"), good, lambda d: b"")),
    ("alg_None", "none", token(hdr("None", "ec"), good, lambda d: b"")),
    ("hmac_with_the_ec_public_key", "hmac", token(hdr("HS256", "ec"), good, hs256_with(pem(ec384)))),
    ("hmac_with_the_rsa_public_key", "hmac", token(hdr("HS256", "rsa"), good, hs256_with(pem(rsa2048)))),
    ("hs384_with_the_jwk_text", "hmac", token(hdr("HS384", "ec"), good, hs256_with(json.dumps(jwks["keys"][0]).encode()))),
    ("der_signature", "not 96", token(hdr("ES384", "ec"), good, lambda d: ec_sign(ec384, "P-384", d, der=True))),
    ("zeroed_signature", "does not verify", token(hdr("ES384", "ec"), good, lambda d: bytes(96))),
    ("truncated_signature", "not 96", token(hdr("ES384", "ec"), good, lambda d: es384(d)[:48])),
    ("empty_signature", "not 96", token(hdr("ES384", "ec"), good, lambda d: b"")),
    ("another_keys_signature", "does not verify", token(hdr("ES384", "ec"), good, lambda d: ec_sign(attacker, "P-384", d))),
    ("wrong_kid", "kid", token(hdr("ES384", "nope"), good, es384)),
    ("no_kid", "no kid", token({"alg": "ES384", "typ": "at+jwt"}, good, es384)),
    ("es256_header_on_the_p384_key", "does not fit", token(hdr("ES256", "ec"), good, es384)),
    ("es384_header_on_the_rsa_key", "does not fit", token(hdr("ES384", "rsa"), good, es384)),
    ("rs256_header_on_the_ec_key", "does not fit", token(hdr("RS256", "ec"), good, rs(padding.PKCS1v15(), hashes.SHA256()))),
    ("typ_jwt", "typ", token(hdr("ES384", "ec", typ="JWT"), good, es384)),
    ("crit", "crit", token(hdr("ES384", "ec", crit=["exp"], exp=1), good, es384)),
    ("key_for_encryption", "not for signatures", token(hdr("ES384", "enc"), good, lambda d: ec_sign(enc, "P-384", d))),
    ("rsa_1024", "2048", token(hdr("RS256", "rsa-small"), good, lambda d: rsa1024.sign(d, padding.PKCS1v15(), hashes.SHA256()))),
    ("es512", "P-521", token(hdr("ES512", "p521"), good, lambda d: ec_sign(p521, "P-521", d))),
    ("embedded_jwk", "kid", token(hdr("ES384", "attacker", jwk=ec_jwk(attacker, "P-384", "attacker")), good, lambda d: ec_sign(attacker, "P-384", d))),
    ("jku_elsewhere", "kid", token(hdr("ES384", "attacker", jku="http://127.0.0.1:1/jwks"), good, lambda d: ec_sign(attacker, "P-384", d))),
    ("wrong_iss", "iss", token(hdr("ES384", "ec"), claims(iss=issuer + "/"), es384)),
    ("wrong_aud", "aud", token(hdr("ES384", "ec"), claims(aud="https://other.api"), es384)),
    ("no_aud", "aud", token(hdr("ES384", "ec"), {k: v for k, v in good.items() if k != "aud"}, es384)),
    ("expired", "expired", token(hdr("ES384", "ec"), claims(exp=now - 120), es384)),
    ("no_exp", "exp", token(hdr("ES384", "ec"), {k: v for k, v in good.items() if k != "exp"}, es384)),
    ("nbf_future", "nbf", token(hdr("ES384", "ec"), claims(nbf=now + 600), es384)),
    ("payload_array", "payload", token(hdr("ES384", "ec"), [good], es384)),
    ("good_high_s", "ok", token(hdr("ES384", "ec"), good, es384_high_s)),
    ("good_exp_with_a_fraction", "ok", token(hdr("ES384", "ec"), claims(exp=now + 3600.5), es384)),
    ("exp_twice", "exp twice", token_raw(hdr("ES384", "ec"), twice("exp", now + 3600, now - 3600), es384)),
    ("aud_twice", "aud twice", token_raw(hdr("ES384", "ec"), twice("aud", audience, "https://other.api"), es384)),
    ("scope_twice", "scope twice", token_raw(hdr("ES384", "ec"), twice("scope", "read:products", "admin"), es384)),
    ("nbf_a_string", "nbf is not a number", token(hdr("ES384", "ec"), claims(nbf="now"), es384)),
    ("nbf_a_bool", "nbf is not a number", token(hdr("ES384", "ec"), claims(nbf=True), es384)),
    ("nbf_a_day_ahead_with_a_fraction", "nbf", token(hdr("ES384", "ec"), claims(nbf=now + 86400.5), es384)),
    ("iat_a_string", "iat is not a number", token(hdr("ES384", "ec"), claims(iat="now"), es384)),
]
for name, expected, t in cases:
    print(f"{name}\t{expected}\t{t}")
