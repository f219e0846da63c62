//! `POST /oauth2/revoke` (RFC 7009): access tokens by `jti`, refresh tokens
//! with their whole family. A client may revoke only its own tokens;
//! unknown, invalid or foreign tokens still answer 200 (§2.2).

use actix_web::{web, HttpRequest, HttpResponse};

use super::issue::refresh_digest;
use super::{access_token, client_auth};
use crate::error::ApiError;
use crate::params::{client_ip, Params};
use crate::state::AppState;
use crate::store::audit::Event;

pub async fn revoke(state: web::Data<AppState>, http: HttpRequest, params: Params) -> Result<HttpResponse, ApiError> {
    let client = client_auth::authenticate(&state, &http, &params).await?;
    let token = params.required("token")?;
    if let Some(v) = access_token::verify_signed(&state, token) {
        if v.client_id() == client.id {
            state.revocations.revoke(&state.store, v.jti(), v.int("exp")).await?;
            state.audit.record(Event {
                event: "token_revoked",
                client_id: Some(&client.id),
                user_id: v.str("sub").filter(|sub| *sub != client.id),
                ip: client_ip(&http).as_deref(),
                detail: Some(v.jti()),
                ..Default::default()
            });
        }
    } else if let Some((family, _)) = state.store.peek_refresh_token(&refresh_digest(&state, token)).await? {
        // RFC 7009 §2.1: revoking a refresh token revokes what it was issued with.
        if family.client_id == client.id {
            state
                .revocations
                .revoke_family(&state.store, &family.id, state.settings.tokens.access_ttl)
                .await?;
            state.audit.record(Event {
                event: "refresh_revoked",
                client_id: Some(&client.id),
                user_id: Some(&family.user_id),
                ip: client_ip(&http).as_deref(),
                ..Default::default()
            });
        }
    }
    Ok(HttpResponse::Ok().finish())
}
