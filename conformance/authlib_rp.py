"""A second certified relying-party library against a real Sesame: Python
Authlib runs the authorization code flow (PKCE, nonce, state) with nothing
but the issuer URL, and validates the RS256 ID token with its own JOSE
(JWKS from discovery, iss, aud, exp, iat, nonce, at_hash if present).
Then userinfo, a refresh, and the RP's side of back-channel logout: the
logout token Sesame POSTs is checked the way Back-Channel Logout §2.6 says.

The "user" is played with plain HTTP (requests): the sign-in page, the code
from the console outbox, signup and consent, as a browser would.

    SESAME_TEST_BIN=target/debug/sesame python conformance/authlib_rp.py
"""

import base64
import http.server
import json
import re
import secrets
import threading
import time
from urllib.parse import parse_qs, urlsplit

import warnings

import requests
import server

# authlib.jose is deprecated in favour of joserfc; it is what Authlib's own OIDC client validates with.
warnings.filterwarnings("ignore", message="authlib.jose module is deprecated")
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, JsonWebToken
from authlib.oidc.core import CodeIDToken

CLIENT_ID = "authlib-rp"
CLIENT_SECRET = secrets.token_urlsafe(32)
CALLBACK = "http://localhost:3999/callback"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# Only RS256 is accepted: the point is that Sesame's default ID tokens are RS256.
RS256_ONLY = JsonWebToken(["RS256"])


class LogoutReceiver(http.server.BaseHTTPRequestHandler):
    """The RP's back-channel logout endpoint: records each logout_token."""

    tokens = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        LogoutReceiver.tokens.append(parse_qs(body).get("logout_token", [None])[0])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def clients_toml(backchannel_url):
    return f"""
[[client]]
id = "{CLIENT_ID}"
name = "Authlib RP"
secret_env = "AUTHLIB_RP_SECRET"
redirect_uris = ["{CALLBACK}"]
post_logout_redirect_uris = ["http://localhost:3999/"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "profile", "email", "offline_access"]
backchannel_logout_uri = "{backchannel_url}"
backchannel_logout_session_required = true
"""


def hidden(html, name):
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no hidden {name} on the page"
    return m.group(1)


def user_signs_in(issuer, browser, authorization_url, email):
    """What a person does in the browser; returns the redirect back to the app."""
    res = browser.get(authorization_url, allow_redirects=False)
    assert res.status_code == 302 and res.headers["location"] == "/login", res.status_code
    page = browser.get(f"{issuer}/login").text
    res = browser.post(f"{issuer}/login", data={"csrf": hidden(page, "csrf"), "identifier": email}, allow_redirects=False)
    assert res.headers["location"] == "/login/verify", res.headers.get("location")
    page = browser.get(f"{issuer}/login/verify").text
    code = browser.get(f"{issuer}/dev/outbox?format=json").json()[0]["code"]
    res = browser.post(f"{issuer}/login/verify", data={"csrf": hidden(page, "csrf"), "code": code}, allow_redirects=False)
    if res.headers["location"] == "/signup":
        page = browser.get(f"{issuer}/signup").text
        res = browser.post(f"{issuer}/signup", data={"csrf": hidden(page, "csrf"), "first_name": "Ada"}, allow_redirects=False)
    if res.headers["location"] == "/consent":
        page = browser.get(f"{issuer}/consent").text
        form = {"csrf": hidden(page, "csrf"), "request": hidden(page, "request"), "decision": "allow"}
        res = browser.post(f"{issuer}/consent", data=form, allow_redirects=False)
    location = res.headers["location"]
    assert location.startswith(CALLBACK), location
    return location


def main():
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LogoutReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    backchannel = f"http://127.0.0.1:{receiver.server_port}/backchannel"
    issuer, child = server.start(clients_toml(backchannel), {"AUTHLIB_RP_SECRET": CLIENT_SECRET})
    try:
        run(issuer)
    finally:
        server.stop(child)
        receiver.shutdown()


def run(issuer):
    meta = requests.get(f"{issuer}/.well-known/openid-configuration").json()
    assert meta["issuer"] == issuer
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"]).json())

    client = OAuth2Session(
        CLIENT_ID,
        CLIENT_SECRET,
        scope="openid email profile offline_access",
        redirect_uri=CALLBACK,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = generate_token(48)
    nonce = generate_token(20)
    url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)

    browser = requests.Session()
    callback = user_signs_in(issuer, browser, url, "authlib@example.com")
    params = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    assert params["state"] == state, "state comes back"
    assert params["iss"] == issuer, "iss comes back (RFC 9207)"

    token = client.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    header = json.loads(base64.urlsafe_b64decode(token["id_token"].split(".")[0] + "=="))
    assert header["alg"] == "RS256", header

    # Authlib's own ID token validation (OIDC Core §3.1.3.7), RS256 only.
    claims = RS256_ONLY.decode(
        token["id_token"],
        jwks,
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": issuer}},
        claims_params={"nonce": nonce, "client_id": CLIENT_ID},
    )
    claims.validate()
    assert claims["email"] == "authlib@example.com"
    print(f"ok   code flow: RS256 ID token for {claims['sub']} validated by Authlib")

    info = client.get(meta["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"] and info["email"] == claims["email"], info
    print("ok   userinfo agrees with the ID token")

    fresh = client.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert fresh["refresh_token"] != token["refresh_token"], "the refresh token rotates"
    again = RS256_ONLY.decode(fresh["id_token"], jwks, claims_cls=CodeIDToken,
                              claims_options={"iss": {"essential": True, "value": issuer}},
                              claims_params={"client_id": CLIENT_ID})
    again.validate()
    assert again["sub"] == claims["sub"]
    print("ok   refresh: rotated, and the new ID token validates")

    # RP-initiated logout; Sesame then tells this RP over the back channel.
    res = browser.get(meta["end_session_endpoint"], params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": "http://localhost:3999/", "state": "bye",
    }, allow_redirects=False)
    assert res.headers["location"] == "http://localhost:3999/?state=bye", res.headers.get("location")
    for _ in range(100):
        if LogoutReceiver.tokens:
            break
        time.sleep(0.05)
    assert LogoutReceiver.tokens, "a logout token arrived"
    logout = RS256_ONLY.decode(LogoutReceiver.tokens[0], jwks)
    logout.validate()
    assert logout["iss"] == issuer and logout["aud"] == CLIENT_ID
    assert BACKCHANNEL_EVENT in logout["events"] and "nonce" not in logout
    assert logout["sid"] == claims["sid"] and logout["sub"] == claims["sub"]
    print("ok   back-channel logout token validated by Authlib; its sid is the ID token's")


if __name__ == "__main__":
    main()
