//! `GET /dev/outbox`: the messages console delivery "sent" (development
//! only: the route exists only when a channel delivers to the console).
//! `?format=json` lists them as JSON.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use askama::Template;

use crate::delivery::OutboxEntry;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "dev/outbox.html")]
struct OutboxPage {
    entries: Vec<OutboxEntry>,
}

#[derive(serde::Deserialize)]
pub struct Query {
    format: Option<String>,
}

pub async fn outbox(state: web::Data<AppState>, query: web::Query<Query>) -> Result<HttpResponse, ApiError> {
    let outbox = state
        .delivery
        .outbox
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("no such endpoint".into()))?;
    let entries = outbox.entries();
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    if query.format.as_deref() == Some("json") {
        return Ok(res.json(entries));
    }
    let html = OutboxPage { entries }
        .render()
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(res.content_type("text/html; charset=utf-8").body(html))
}
