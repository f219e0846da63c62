"""schemathesis against Sesame's own /openapi.json (issue 13): starts a real
`sesame serve`, gets an admin token, and runs `st run` with its default
checks and the bounded settings of conformance/schemathesis.toml. Exits
non-zero on any failure.

    SESAME_TEST_BIN=target/debug/sesame python conformance/api_schema.py
"""

import os
import secrets
import subprocess
import sys

import requests
import server

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = secrets.token_urlsafe(32)

# An OTP/OAuth client for the client-authenticated endpoints, and a separate
# admin client (the admin API may change or delete any client, this one too).
CLIENTS = """
[[client]]
id = "st"
name = "Schemathesis"
secret_env = "ST_SECRET"
redirect_uris = ["http://localhost:3000/callback"]
post_logout_redirect_uris = ["http://localhost:3000/"]
grant_types = ["otp", "authorization_code", "refresh_token", "client_credentials"]
scopes = ["openid", "profile", "email", "phone", "offline_access"]

[[client]]
id = "st-admin"
name = "Schemathesis admin"
secret_env = "ST_SECRET"
grant_types = ["client_credentials"]
scopes = ["sesame:admin"]
"""


def main():
    issuer, child = server.start(CLIENTS, {"ST_SECRET": SECRET})
    try:
        res = requests.post(f"{issuer}/oauth2/token", auth=("st-admin", SECRET),
                            data={"grant_type": "client_credentials", "scope": "sesame:admin"})
        res.raise_for_status()
        env = dict(os.environ, ST_CLIENT_ID="st", ST_CLIENT_SECRET=SECRET, ST_ADMIN_TOKEN=res.json()["access_token"])
        st = os.path.join(os.path.dirname(sys.executable), "st")
        seed = os.environ.get("SCHEMATHESIS_SEED", "20261202")
        run = subprocess.run([st, "--config-file", os.path.join(HERE, "schemathesis.toml"), "run", f"{issuer}/openapi.json",
                              "--seed", seed, "--no-color"], env=env)
        sys.exit(run.returncode)
    finally:
        server.stop(child)


if __name__ == "__main__":
    main()
