//! Abuse resistance (SPEC §10) that is not a counter: which numbers may get
//! an SMS at all, and the bot check. The counted limits live with the code
//! policy (`otp::limits`); client addresses behind proxies in `net`.

pub mod bot_check;
mod numbers;

pub use bot_check::BotCheck;
pub use numbers::check_number;
