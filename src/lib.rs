//! Sesame: a passwordless OAuth 2.0 / OpenID Connect identity provider.

pub mod abuse;
pub mod accounts;
pub mod api;
pub mod audit;
pub mod cli;
pub mod clients;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod health;
pub mod jose;
pub mod metrics;
pub mod net;
pub mod oauth;
pub mod oidc;
pub mod otp;
pub mod params;
pub mod retention;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod web;
