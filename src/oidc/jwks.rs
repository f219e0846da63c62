//! `GET /oauth2/jwks` (RFC 7517 §5): the current and still-valid previous keys.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::state::AppState;

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .body(state.keys.ring().jwks_json.clone())
}
