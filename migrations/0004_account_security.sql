-- SPEC §9: only verified identifiers sign in. An email or phone given but
-- never proven by a code is kept as a contact (`contact_email`,
-- `contact_phone`): shown with `*_verified: false`, never a lookup key, never
-- unique. `email`, `email_key` and `phone` hold verified identifiers only.
ALTER TABLE users ADD COLUMN contact_email TEXT;
ALTER TABLE users ADD COLUMN contact_phone TEXT;
UPDATE users SET contact_email = email, email = NULL, email_key = NULL, email_verified = 0
  WHERE email IS NOT NULL AND email_verified = 0;
UPDATE users SET contact_phone = phone, phone = NULL, phone_verified = 0
  WHERE phone IS NOT NULL AND phone_verified = 0;

-- First-party clients (SPEC §1 clients.toml `first_party`) may receive the
-- `sesame:account` scope, which sensitive account changes through the API need.
ALTER TABLE clients ADD COLUMN first_party BIGINT NOT NULL DEFAULT 0;

-- Magic links (SPEC §9): the number the asking tab shows, and whether the
-- browser that opened the link entered it, which alone lets the asking tab
-- take the sign-in over.
ALTER TABLE otp_codes ADD COLUMN match_number BIGINT;
ALTER TABLE otp_codes ADD COLUMN handoff_allowed BIGINT NOT NULL DEFAULT 0;

-- SPEC §3: where the OTP API's emails link to for a client (its own URL,
-- with `?token=…`); NULL: code only.
ALTER TABLE clients ADD COLUMN magic_link_uri TEXT;

-- Email keys fold final sigma as case folding does (`ς` = `σ`); re-key the
-- few stored ones, unless the folded key is another account's already.
UPDATE users SET email_key = REPLACE(email_key, 'ς', 'σ')
  WHERE email_key LIKE '%ς%'
    AND NOT EXISTS (SELECT 1 FROM users AS other WHERE other.email_key = REPLACE(users.email_key, 'ς', 'σ'));

-- Audiences (RFC 8707, RFC 9068 §3): the resource servers a client may ask
-- tokens for (JSON array), and the ones an authorization code or a token
-- family was granted for (space-separated; empty: the client itself).
ALTER TABLE clients ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
ALTER TABLE auth_codes ADD COLUMN resources TEXT NOT NULL DEFAULT '';
ALTER TABLE token_families ADD COLUMN resources TEXT NOT NULL DEFAULT '';
