//! What every request handler shares: settings, store, keys, digest key.

use actix_web::web::Bytes;

use crate::audit::AuditLog;
use crate::config::Settings;
use crate::crypto::Digester;
use crate::delivery::Delivery;
use crate::jose::Keys;
use crate::oauth::revocations::Revocations;
use crate::store::Store;

pub struct AppState {
    pub settings: Settings,
    pub store: Store,
    pub keys: std::sync::Arc<Keys>,
    pub digester: Digester,
    pub delivery: Delivery,
    pub revocations: Revocations,
    pub audit: AuditLog,
    pub metrics: crate::metrics::Metrics,
    /// `abuse.bot_check`, when on.
    pub bot_check: Option<crate::abuse::BotCheck>,
    /// Sign-outs to pass on to clients (Back-Channel Logout).
    pub backchannel: crate::oidc::backchannel::Backchannel,
    /// The discovery document, serialized once at start.
    pub discovery: Bytes,
}

impl AppState {
    pub fn issuer(&self) -> &str {
        self.settings.issuer()
    }
}
