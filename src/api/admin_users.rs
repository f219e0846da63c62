//! The admin API for users: `GET /admin/api/users[?search=…&limit=…]`,
//! `GET, PUT, DELETE /admin/api/users/{sub}`. `PUT` takes `disabled` and
//! `is_admin`; disabling or deleting ends the user's token families (on this
//! node at once, on the others within `server.revocation_sync`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::Value;

use super::admin::admin;
use crate::accounts::{user_json, Accounts};
use crate::error::{invalid_request, ApiError};
use crate::params::{body_limit, read_body};
use crate::state::AppState;
use crate::store::users::User;

/// A user as the admin API and `sesame user --json` show it.
pub fn admin_view(u: &User) -> Value {
    let mut v = user_json(u);
    v["is_admin"] = u.is_admin.into();
    v["disabled"] = u.disabled.into();
    v
}

#[derive(Deserialize)]
pub struct ListQuery {
    search: Option<String>,
    limit: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    disabled: Option<bool>,
    is_admin: Option<bool>,
}

async fn found(state: &AppState, sub: &str) -> Result<User, ApiError> {
    state
        .store
        .user(sub)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user with sub `{sub}`")))
}

pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid_request("`limit` must be between 1 and 1000"));
    }
    let users = state.store.users(q.search.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(users.iter().map(admin_view).collect::<Vec<_>>()))
}

pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    sub: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&state, &req).await?;
    Ok(HttpResponse::Ok().json(admin_view(&found(&state, &sub).await?)))
}

pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    sub: web::Path<String>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = admin(&state, &req).await?;
    let user = found(&state, &sub).await?;
    let body = read_body(&mut payload, body_limit(&req)).await?;
    let change: Change = crate::params::json_object(&body)
        .map_err(|e| invalid_request(format!("expected {{\"disabled\": bool, \"is_admin\": bool}}: {e}")))?;
    let actor = who.actor();
    let accounts = Accounts::of(&state);
    if let Some(disabled) = change.disabled {
        accounts.set_disabled(&user, disabled, actor).await?;
    }
    if let Some(is_admin) = change.is_admin {
        accounts.set_admin(&user, is_admin, actor).await?;
    }
    Ok(HttpResponse::Ok().json(admin_view(&found(&state, &user.id).await?)))
}

pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    sub: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = admin(&state, &req).await?;
    let user = found(&state, &sub).await?;
    let actor = who.actor();
    Accounts::of(&state).delete(&user, actor).await?;
    Ok(HttpResponse::NoContent().finish())
}
