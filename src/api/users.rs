//! `PUT /api/v1/user/` (and `POST /api/v1/users`): create the account for a
//! verified identifier, in the original project's JSON shape, and `PATCH
//! /api/v1/user/`. This module only translates HTTP: the rules are the
//! account service's (`crate::accounts`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::otp_client;
use crate::accounts::{
    passwords, user_json, valid_name, valid_username, Accounts, Actor, Authority, PasswordProof, Profile,
};
use crate::domain::{Email, Identifier, Phone};
use crate::error::{invalid_request, ApiError};
use crate::params::{body_limit, client_ip, read_body, Params};
use crate::state::AppState;

/// Top-level fields with a meaning of their own; everything else is metadata.
const KNOWN: &[&str] = &[
    "secret_identifier",
    "auto_username",
    "username",
    "email",
    "first_name",
    "last_name",
    "password",
    "client_id",
    "client_secret",
];

pub async fn create_user(
    state: web::Data<AppState>,
    http: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&mut payload, body_limit(&http)).await?;
    let Value::Object(body) = crate::params::strict_json(&body)? else {
        return Err(invalid_request("the body must be a JSON object"));
    };
    let creds: Vec<(String, String)> = ["client_id", "client_secret"]
        .iter()
        .filter_map(|k| {
            body.get(*k)
                .and_then(Value::as_str)
                .map(|v| (k.to_string(), v.to_string()))
        })
        .collect();
    let client = otp_client(&state, &http, &Params::from_pairs(creds)?).await?;

    let secret =
        str_field(&body, "secret_identifier")?.ok_or_else(|| invalid_request("missing `secret_identifier`"))?;
    let digest = crate::otp::secret_identifier_digest(&state, secret);
    let verified = state
        .store
        .verified_identifier(&digest, &client.id)
        .await?
        .ok_or_else(|| invalid_request("secret_identifier is invalid, expired, used, or for another client"))?;
    let region = &state.settings.phones();
    let verified_ident = match verified.kind.as_str() {
        "phone" => Identifier::Phone(Phone::parse(&verified.identifier, region).map_err(invalid_request)?),
        _ => Identifier::Email(Email::parse(&verified.identifier).map_err(invalid_request)?),
    };
    let profile = parse_profile(&body, &verified_ident, region)?;
    let ip = client_ip(&http);
    let user = Accounts::of(&state)
        .create(&profile, Actor::Client(&client.id), ip.as_deref())
        .await?;
    Ok(HttpResponse::Created().json(user_json(&user)))
}

fn str_field<'a>(body: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.trim().is_empty())),
        Some(_) => Err(invalid_request(format!("`{name}` must be a string"))),
    }
}

/// The account body in the original project's shape. The verified phone or
/// email comes from the `secret_identifier`; a different one of the same kind
/// is `400`. The other kind, given but not proven, is kept as a contact.
fn parse_profile(
    body: &Map<String, Value>,
    verified: &Identifier,
    region: &crate::domain::PhoneRules,
) -> Result<Profile, ApiError> {
    let mut p = Profile::for_verified(verified);
    let account = match body.get("account") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(a)) => a.clone(),
        Some(_) => return Err(invalid_request("`account` must be an object")),
    };
    let body_phone = match account.get("phone") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(Phone::parse(s, region).map_err(|e| invalid_request(format!("account.phone: {e}")))?)
        }
        Some(_) => return Err(invalid_request("`account.phone` must be a string")),
    };
    let body_email = str_field(body, "email")?
        .map(Email::parse)
        .transpose()
        .map_err(|e| invalid_request(format!("email: {e}")))?;
    match verified {
        Identifier::Phone(v) => {
            if body_phone.as_ref().is_some_and(|b| b != v) {
                return Err(invalid_request("account.phone differs from the verified phone number"));
            }
            if let Some(e) = body_email {
                p = p.with_contact(Identifier::Email(e));
            }
        }
        Identifier::Email(v) => {
            if body_email.as_ref().is_some_and(|b| b.key() != v.key()) {
                return Err(invalid_request("email differs from the verified email address"));
            }
            if let Some(ph) = body_phone {
                p = p.with_contact(Identifier::Phone(ph));
            }
        }
    }
    let auto = match body.get("auto_username") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid_request("`auto_username` must be true or false")),
    };
    p.username = match (auto, str_field(body, "username")?) {
        (true, _) => None,
        (false, Some(u)) => Some(valid_username(u)?),
        (false, None) => return Err(invalid_request("`username` is required unless `auto_username` is true")),
    };
    p.first_name = valid_name(str_field(body, "first_name")?.unwrap_or(""))?;
    p.last_name = valid_name(str_field(body, "last_name")?.unwrap_or(""))?;
    if let Some(pw) = str_field(body, "password")? {
        passwords::acceptable(pw)?;
        p.password = Some(pw.to_string());
    }
    let mut metadata: Map<String, Value> = body
        .iter()
        .filter(|(k, _)| !KNOWN.contains(&k.as_str()) && *k != "account")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let rest: Map<String, Value> = account.into_iter().filter(|(k, _)| k != "phone").collect();
    if !rest.is_empty() {
        metadata.insert("account".into(), Value::Object(rest));
    }
    p.metadata = Value::Object(metadata);
    Ok(p)
}

/// `PATCH /api/v1/user/`: the account holder sets a username and/or password
/// with their access token. A password is a sensitive change (SPEC §9): the
/// token must come from a `first_party` client, carry `sesame:account` and
/// an `auth_time` at most `account.reauth_after` old; replacing a password
/// also needs `current_password`.
pub async fn update_credentials(
    state: web::Data<AppState>,
    http: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let invalid = || ApiError::InvalidToken("a Bearer access token of the user is required".into());
    let token = crate::oidc::userinfo::bearer(&http).ok_or_else(invalid)?;
    let verified = crate::oauth::access_token::verify_active(&state, token)
        .await?
        .ok_or_else(invalid)?;
    let user = state
        .store
        .user(verified.str("sub").unwrap_or(""))
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(invalid)?;
    let client = state.store.client(verified.client_id()).await?.ok_or_else(invalid)?;
    let body = read_body(&mut payload, body_limit(&http)).await?;
    let Value::Object(body) = crate::params::strict_json(&body)? else {
        return Err(invalid_request("the body must be a JSON object"));
    };
    const FIELDS: [&str; 3] = ["username", "password", "current_password"];
    if let Some(other) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid_request(format!(
            "`{other}` cannot be changed here (username, password)"
        )));
    }
    let scope = verified.scope();
    let auth_time = verified.claims().get("auth_time").and_then(Value::as_i64);
    let by = Authority::Token {
        client: &client,
        scope: &scope,
        auth_time,
        family: verified.str("sid"),
    };
    let proof = PasswordProof {
        current: str_field(&body, "current_password")?,
        fresh_code: false,
    };
    let ip = client_ip(&http);
    let updated = Accounts::of(&state)
        .set_credentials(
            &user,
            str_field(&body, "username")?,
            str_field(&body, "password")?,
            proof,
            &by,
            ip.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(user_json(&updated)))
}
