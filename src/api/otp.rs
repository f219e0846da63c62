//! `POST /otp/getcode/` and `POST /otp/verifycode/`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::otp_client;
use crate::domain::Identifier;
use crate::error::{invalid_request, ApiError};
use crate::otp::{self, Origin, Proof};
use crate::params::{client_ip, Params};
use crate::state::AppState;

fn identifier(state: &AppState, params: &Params) -> Result<Identifier, ApiError> {
    Identifier::from_params(params.get("phone"), params.get("email"), &state.settings.phones()).map_err(invalid_request)
}

/// A BCP 47-ish language tag; English when absent.
fn locale(params: &Params) -> Result<String, ApiError> {
    let tag = params.get("locale").unwrap_or("en");
    if tag.len() > 35 || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(invalid_request(
            "`locale` must be a language tag such as `en` or `pt-BR`",
        ));
    }
    Ok(tag.to_string())
}

pub async fn getcode(state: web::Data<AppState>, http: HttpRequest, params: Params) -> Result<HttpResponse, ApiError> {
    let client = otp_client(&state, &http, &params).await?;
    let ident = identifier(&state, &params)?;
    let locale = locale(&params)?;
    let ip = client_ip(&http);
    let sent = otp::send_code(
        &state,
        &Origin {
            client: &client,
            ip: ip.as_deref(),
            browser: None,
        },
        &ident,
        &locale,
        params.get("bot_token"),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "sent",
        "channel": sent.channel,
        "expires_in": sent.expires_in,
        "resend_after": sent.resend_after,
    })))
}

pub async fn verifycode(
    state: web::Data<AppState>,
    http: HttpRequest,
    params: Params,
) -> Result<HttpResponse, ApiError> {
    let client = otp_client(&state, &http, &params).await?;
    let ident = identifier(&state, &params)?;
    let proof = Proof::from_params(params.get("code"), params.get("magic_token"))?;
    let ip = client_ip(&http);
    let origin = Origin {
        client: &client,
        ip: ip.as_deref(),
        browser: None,
    };
    // One group, so one commit on SQLite.
    let (secret, exists) = state
        .store
        .grouped(async {
            proof.verify(&state, &origin, &ident).await?;
            Ok::<_, ApiError>(otp::issue_secret_identifier(&state, &client, &ident).await?)
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "secret_identifier": secret,
            "expires_in": state.settings.otp.ttl.as_secs(),
            "account_exists": exists,
        })))
}
