-- SPEC §10: a code belongs to the source that asked for it (an IPv4 address
-- or an IPv6 /64). A stranger's request for a code, from another source,
-- neither replaces nor burns the code a user holds; codes sent before this
-- migration belong to no source and are checked from any.
ALTER TABLE otp_codes ADD COLUMN source TEXT NOT NULL DEFAULT '';
