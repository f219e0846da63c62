//! Types that parse: a value of one of these is known to be well formed.

pub mod client;
pub mod scope;

pub use client::Client;
pub use scope::Scope;
