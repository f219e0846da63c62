//! OpenID Connect Discovery 1.0 §3 and RFC 8414 §2: one document, built once
//! at start, served at both well-known paths.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::config::{Settings, SigningAlg};
use crate::oauth::grants;
use crate::state::AppState;

pub fn document(settings: &Settings) -> serde_json::Value {
    let iss = settings.issuer();
    json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth2/authorize"),
        "end_session_endpoint": format!("{iss}/oauth2/logout"),
        "token_endpoint": format!("{iss}/oauth2/token"),
        "jwks_uri": format!("{iss}/oauth2/jwks"),
        "userinfo_endpoint": format!("{iss}/oauth2/userinfo"),
        "introspection_endpoint": format!("{iss}/oauth2/introspect"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        "grant_types_supported": grants::advertised(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "ui_locales_supported": ["en"],
        "acr_values_supported": [crate::oidc::id_token::ACR],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": SigningAlg::ALL.map(SigningAlg::as_str),
        "scopes_supported": ["openid", "profile", "email", "phone", "address", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "azp", "sid",
            "name", "given_name", "family_name", "preferred_username", "updated_at", "email", "email_verified",
            "phone_number", "phone_number_verified", "address"],
        "claim_types_supported": ["normal"],
        "display_values_supported": ["page", "popup", "touch", "wap"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        // OIDC Discovery §3: true when left out.
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    })
}

pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(state.discovery.clone())
}
