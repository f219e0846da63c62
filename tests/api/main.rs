//! Sesame's integration tests: the real app over HTTP, on SQLite and PostgreSQL.

mod browser;
mod helpers;
mod peers;

mod abuse;
mod account;
mod account_security;
mod admin_api;
mod admin_pages;
mod api_docs;
mod audiences;
mod bad_input;
mod cli;
mod client_credentials;
mod conformance;
mod conformance_logout;
mod contention;
mod crashes;
mod delivery;
mod discovery;
mod introspect_revoke;
mod keys_and_restart;
mod magic_links_api;
mod migrations;
mod multi_node;
mod otp_api_errors;
mod otp_flow;
mod otp_limits;
mod outage;
mod page_limits;
mod passwords;
mod refresh;
mod retention;
mod sign_in;
mod token_binding;
mod token_policy;
