//! Sesame's integration tests: the real app over HTTP, on SQLite and PostgreSQL.

mod helpers;
mod peers;

mod bad_input;
mod cli;
mod client_credentials;
mod discovery;
mod introspect_revoke;
mod keys_and_restart;
mod otp_flow;
