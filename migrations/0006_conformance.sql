-- OpenID conformance (issue 13).

-- A current signing key per algorithm: ID tokens are signed with the client's
-- `id_token_signed_response_alg`, access tokens with `tokens.signing_alg`.
DROP INDEX signing_keys_one_current;
CREATE UNIQUE INDEX signing_keys_current_per_alg ON signing_keys (alg) WHERE is_current = 1;

-- OIDC Registration: the algorithm of a client's ID tokens (RS256 by default).
-- Clients registered before keep what their ID tokens had: the algorithm of
-- the one current key (clients.toml clients are applied again at each start).
ALTER TABLE clients ADD COLUMN id_token_signed_response_alg TEXT NOT NULL DEFAULT 'RS256';
UPDATE clients SET id_token_signed_response_alg = COALESCE((SELECT alg FROM signing_keys WHERE is_current = 1), 'RS256');

-- OpenID Connect Back-Channel Logout 1.0: where a client hears of sign-outs,
-- and whether it needs `sid` in the logout token.
ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;
ALTER TABLE clients ADD COLUMN backchannel_logout_session_required BIGINT NOT NULL DEFAULT 0;

-- The browser session (its `sid`) an authorization code and the token family
-- it started came from, so that signing out of that session reaches them.
ALTER TABLE auth_codes ADD COLUMN session_id TEXT;
ALTER TABLE token_families ADD COLUMN session_id TEXT;
CREATE INDEX token_families_session ON token_families (session_id);
