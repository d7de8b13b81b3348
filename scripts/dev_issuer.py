#!/usr/bin/env python3
"""Development OIDC-style token issuer for ecr-token-broker. Not for production.

  dev_issuer.py serve --port P --state-dir D
      Serves /.well-known/openid-configuration and /jwks.json on 127.0.0.1:P.
  dev_issuer.py mint --port P --state-dir D [--sub S] [--aud A] [--ttl SECONDS]
                     [--claim key=value | --claim key:=JSON ...] [--no-defaults]
                     [--count N]
      Prints an RS256 JWT that the served JWKS verifies; iss is http://127.0.0.1:P.
      With --count N, prints N of them, one a line, for N callers: each `{n}` in the
      subject and in string claims becomes the caller's number, 0 to N-1.

The signing key (RSA 2048) is created in D/dev-issuer-key.pem on first use and
reused afterwards, so tokens stay valid across restarts. Needs PyJWT and
cryptography: run it with .venv/bin/python (it re-executes itself with that
interpreter when they are missing).
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

try:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
except ImportError:
    venv = Path(__file__).resolve().parent.parent / ".venv"
    # (Compare prefixes: a venv's python is a symlink to the base interpreter.)
    if (venv / "bin" / "python").exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(venv / "bin" / "python"), [str(venv / "bin" / "python"), *sys.argv])
    sys.exit("dev_issuer.py needs PyJWT and cryptography: run it with .venv/bin/python")

KEY_FILE = "dev-issuer-key.pem"
DEFAULT_CLAIMS = {
    "repository": "acme/api",
    "repository_owner": "acme",
    "ref": "refs/heads/main",
    "actor": "dev",
}


def load_or_create_key(state_dir: Path):
    path = state_dir / KEY_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Write to a temporary file created 0600, then rename: never readable by
        # others, never half-written.
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def b64url_uint(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(key) -> dict:
    nums = key.public_key().public_numbers()
    e, n = b64url_uint(nums.e), b64url_uint(nums.n)
    # RFC 7638 thumbprint: SHA-256 of the required members, sorted, no spaces.
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"), sort_keys=True)
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}


def issuer_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def serve(args) -> None:
    key = load_or_create_key(Path(args.state_dir))
    iss = issuer_url(args.port)
    documents = {
        "/.well-known/openid-configuration": {
            "issuer": iss,
            "jwks_uri": f"{iss}/jwks.json",
            "id_token_signing_alg_values_supported": ["RS256"],
        },
        "/jwks.json": {"keys": [public_jwk(key)]},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            doc = documents.get(self.path.split("?", 1)[0])
            body = json.dumps(doc if doc is not None else {"error": "not found"}).encode()
            self.send_response(200 if doc is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=60")
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer.request_queue_size = 128  # the default of 5 drops bursts
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"dev issuer {iss} serving {iss}/jwks.json", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def parse_claim(text: str):
    """key=value sets a string; key:=JSON sets any JSON value (number, list, ...)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value or key:=JSON, got {text!r}")
    if key.endswith(":"):
        try:
            return key[:-1], json.loads(value)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"{text!r}: invalid JSON: {e}") from None
    return key, value


def mint(args) -> None:
    key = load_or_create_key(Path(args.state_dir))
    kid = public_jwk(key)["kid"]
    now = int(time.time())
    template = {} if args.no_defaults else dict(DEFAULT_CLAIMS)
    template.update({"iss": args.iss or issuer_url(args.port), "aud": args.aud, "sub": args.sub})
    template.update(dict(args.claim))
    for n in range(args.count):
        claims = template
        if args.count > 1:
            # str.replace, not str.format: other braces in a claim stay as they are.
            claims = {k: v.replace("{n}", str(n)) if isinstance(v, str) else v for k, v in template.items()}
        claims = {**claims, "iat": now, "nbf": now, "exp": now + args.ttl, "jti": str(uuid.uuid4())}
        print(jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid}))


def main() -> None:
    parser = argparse.ArgumentParser(description="Development token issuer (not for production).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "mint"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True, help="port the issuer serves on")
        p.add_argument("--state-dir", required=True, help="directory holding the signing key")
    m = sub.choices["mint"]
    m.add_argument("--sub", default="repo:acme/api:ref:refs/heads/main")
    m.add_argument("--aud", default="ecr-token-broker")
    m.add_argument("--ttl", type=int, default=3600, help="seconds until exp (negative: already expired)")
    m.add_argument("--iss", help="override iss (default http://127.0.0.1:PORT)")
    m.add_argument("--claim", action="append", type=parse_claim, default=[], metavar="KEY=VALUE")
    m.add_argument("--no-defaults", action="store_true", help="omit repository, repository_owner, ref, actor")
    m.add_argument("--count", type=int, default=1, help="mint N tokens, {n} in string claims numbering them")
    args = parser.parse_args()
    serve(args) if args.command == "serve" else mint(args)


if __name__ == "__main__":
    main()
