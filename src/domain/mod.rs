//! Types that parse: a value of one of these is known to be well formed.

pub mod client;
pub mod identifier;
pub mod scope;

pub use client::Client;
pub use identifier::{parse_identifier, Email, Identifier, Phone, PhoneRules};
pub use scope::Scope;
