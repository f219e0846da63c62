//! Server-rendered pages: sign-in, signup, consent, account, and their
//! sessions; plus the development outbox and the static assets.

pub mod account;
pub mod admin;
pub mod api_docs;
pub mod assets;
pub mod authorize;
pub mod consent;
pub mod dates;
pub mod flow;
pub mod i18n;
pub mod login;
pub mod outbox;
pub mod page;
pub mod reauth;
pub mod session;
