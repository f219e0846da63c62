// The relying party the browser tests sign in to: a small web app on
// localhost using openid-client (a certified OpenID Connect library) with
// nothing but Sesame's issuer URL, a client id and secret.
import http from "node:http";
import { Issuer, generators } from "openid-client";
import { createRemoteJWKSet, jwtVerify } from "jose";

export async function startRp({ issuerUrl, clientId, clientSecret, port }) {
  const issuer = await Issuer.discover(issuerUrl);
  const base = `http://localhost:${port}`;
  const client = new issuer.Client({
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [`${base}/callback`],
    post_logout_redirect_uris: [`${base}/bye`],
    response_types: ["code"],
    id_token_signed_response_alg: issuer.id_token_signing_alg_values_supported[0],
  });
  const jwks = createRemoteJWKSet(new URL(issuer.jwks_uri));
  // One browser at a time per RP instance is all the tests need.
  const state = { pending: null, tokens: null, claims: null, userinfo: null, refreshed: null, bye: null };

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, base);
    const html = (status, body) => {
      res.writeHead(status, { "content-type": "text/html; charset=utf-8" });
      res.end(`<!doctype html><meta charset="utf-8"><title>Demo RP</title><body>${body}</body>`);
    };
    try {
      if (url.pathname === "/login") {
        const verifier = generators.codeVerifier();
        const nonce = generators.nonce();
        const st = generators.state();
        state.pending = { verifier, nonce, state: st };
        const extra = Object.fromEntries(url.searchParams);
        res.writeHead(302, {
          location: client.authorizationUrl({
            scope: "openid email phone profile offline_access",
            code_challenge: generators.codeChallenge(verifier),
            code_challenge_method: "S256",
            nonce,
            state: st,
            ...extra,
          }),
        });
        return res.end();
      }
      if (url.pathname === "/callback") {
        // response_mode=form_post: the answer is the form body of a POST.
        if (req.method === "POST") {
          const chunks = [];
          for await (const chunk of req) chunks.push(chunk);
          req.body = Buffer.concat(chunks).toString();
        }
        state.callbackMethod = req.method;
        const params = client.callbackParams(req);
        const p = state.pending;
        // Checks state, iss (RFC 9207), the ID token's signature (JWKS), iss, aud, nonce, exp.
        const tokens = await client.callback(`${base}/callback`, params, {
          code_verifier: p.verifier,
          nonce: p.nonce,
          state: p.state,
        });
        // And once more by hand with jose, to show exactly what is checked.
        const { payload } = await jwtVerify(tokens.id_token, jwks, { issuer: issuerUrl, audience: clientId });
        if (payload.nonce !== p.nonce) throw new Error("nonce mismatch");
        state.tokens = tokens;
        state.claims = payload;
        state.idTokenAlg = JSON.parse(Buffer.from(tokens.id_token.split(".")[0], "base64url")).alg;
        state.userinfo = await client.userinfo(tokens.access_token);
        return html(200, `<h1 id="welcome">Signed in</h1><pre id="claims">${JSON.stringify(payload)}</pre>`);
      }
      if (url.pathname === "/refresh") {
        state.refreshed = await client.refresh(state.tokens.refresh_token);
        return html(200, `<p id="refreshed">refreshed</p>`);
      }
      if (url.pathname === "/logout") {
        res.writeHead(302, {
          location: client.endSessionUrl({
            id_token_hint: state.tokens.id_token,
            post_logout_redirect_uri: `${base}/bye`,
            state: "bye-state",
          }),
        });
        return res.end();
      }
      if (url.pathname === "/bye") {
        state.bye = url.searchParams.get("state");
        return html(200, `<h1 id="bye">Signed out</h1>`);
      }
      html(404, "not found");
    } catch (e) {
      state.error = e;
      html(500, `<pre id="error">${String(e && e.message)}</pre>`);
    }
  });
  await new Promise((resolve) => server.listen(port, resolve));
  return { base, state, client, close: () => server.close() };
}
