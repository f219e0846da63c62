//! The pages' stylesheet and script, compiled into the binary (no CDN).

use actix_web::http::header;
use actix_web::HttpResponse;

const CSS: &str = include_str!("../../static/sesame.css");
const JS: &str = include_str!("../../static/sesame.js");

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

pub async fn css() -> HttpResponse {
    asset("text/css; charset=utf-8", CSS)
}

pub async fn js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", JS)
}
