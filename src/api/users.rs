//! `PUT /api/v1/user/` (and `POST /api/v1/users`): create the account for a
//! verified identifier, in the original project's JSON shape. The verified
//! phone or email comes from the `secret_identifier`; unknown fields are
//! kept as the user's `metadata`.

use actix_web::{web, HttpRequest, HttpResponse};
use argon2::password_hash::{PasswordHasher, SaltString};
use serde_json::{json, Map, Value};

use super::otp_client;
use crate::crypto;
use crate::domain::{Email, Identifier, Phone};
use crate::error::{invalid_request, ApiError};
use crate::params::{body_limit, peer_ip, read_body, Params};
use crate::state::AppState;
use crate::store::audit::Event;
use crate::store::users::{InsertUser, NewUser, User};

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

/// A validated account to create.
#[derive(Default)]
pub struct Profile {
    pub username: Option<String>,
    pub email: Option<Email>,
    pub email_verified: bool,
    pub phone: Option<Phone>,
    pub phone_verified: bool,
    pub first_name: String,
    pub last_name: String,
    pub password: Option<String>,
    pub metadata: Value,
}

impl Profile {
    /// Just the verified identifier and a generated username.
    pub fn for_verified(ident: &Identifier) -> Profile {
        let mut p = Profile {
            metadata: json!({}),
            ..Default::default()
        };
        match ident {
            Identifier::Phone(ph) => (p.phone, p.phone_verified) = (Some(ph.clone()), true),
            Identifier::Email(e) => (p.email, p.email_verified) = (Some(e.clone()), true),
        }
        p
    }
}

pub fn user_json(u: &User) -> Value {
    json!({
        "sub": u.id,
        "username": u.username,
        "email": u.email,
        "email_verified": u.email_verified,
        "phone_number": u.phone,
        "phone_number_verified": u.phone_verified,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "metadata": u.metadata,
        "created_at": u.created_at,
    })
}

pub async fn create_user(
    state: web::Data<AppState>,
    http: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&mut payload, body_limit(&http)).await?;
    let Value::Object(body) =
        serde_json::from_slice::<Value>(&body).map_err(|e| invalid_request(format!("malformed JSON body: {e}")))?
    else {
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
    let region = &state.settings.otp.default_region;
    let verified_ident = match verified.kind.as_str() {
        "phone" => Identifier::Phone(Phone::parse(&verified.identifier, region).map_err(invalid_request)?),
        _ => Identifier::Email(Email::parse(&verified.identifier).map_err(invalid_request)?),
    };
    let profile = parse_profile(&body, &verified_ident, region)?;
    let user = create(&state, &profile).await?;
    let ip = peer_ip(&http);
    let e = Event {
        event: "account_created",
        client_id: Some(&client.id),
        user_id: Some(&user.id),
        ident_key: Some(&verified.ident_key),
        ip: ip.as_deref(),
        ..Default::default()
    };
    state.audit.record(e);
    Ok(HttpResponse::Created().json(user_json(&user)))
}

fn str_field<'a>(body: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.trim().is_empty())),
        Some(_) => Err(invalid_request(format!("`{name}` must be a string"))),
    }
}

fn parse_profile(body: &Map<String, Value>, verified: &Identifier, region: &str) -> Result<Profile, ApiError> {
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
            p.email = body_email;
        }
        Identifier::Email(v) => {
            if body_email.as_ref().is_some_and(|b| b.key() != v.key()) {
                return Err(invalid_request("email differs from the verified email address"));
            }
            p.phone = body_phone;
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
    for (field, slot) in [("first_name", &mut p.first_name), ("last_name", &mut p.last_name)] {
        let v = str_field(body, field)?.unwrap_or("").trim();
        if v.chars().count() > 100 {
            return Err(invalid_request(format!("`{field}` is longer than 100 characters")));
        }
        *slot = v.to_string();
    }
    if let Some(pw) = str_field(body, "password")? {
        if !(8..=128).contains(&pw.chars().count()) {
            return Err(invalid_request("`password` must be 8 to 128 characters"));
        }
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

fn valid_username(u: &str) -> Result<String, ApiError> {
    let ok = (3..=32).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(invalid_request(
            "`username` must be 3 to 32 letters, digits, '.', '_' or '-'",
        ));
    }
    Ok(u.to_string())
}

/// Creates the account; `409` when the phone, email or username is taken.
pub async fn create(state: &AppState, p: &Profile) -> Result<User, ApiError> {
    let password_hash = match &p.password {
        Some(pw) => Some(hash_password(pw.clone()).await?),
        None => None,
    };
    let id = crypto::random_id::<16>();
    // A generated username may collide (rarely): try a few.
    for _ in 0..3 {
        let username = p
            .username
            .clone()
            .unwrap_or_else(|| format!("user_{}", crypto::random_digits(10)));
        let outcome = state
            .store
            .insert_user(&NewUser {
                id: &id,
                username: Some(&username),
                username_key: Some(username.to_ascii_lowercase()),
                email: p.email.as_ref().map(Email::address),
                email_key: p.email.as_ref().map(Email::key),
                email_verified: p.email_verified,
                phone: p.phone.as_ref().map(Phone::e164),
                phone_verified: p.phone_verified,
                first_name: &p.first_name,
                last_name: &p.last_name,
                password_hash: password_hash.as_deref(),
                metadata: &p.metadata,
            })
            .await?;
        match outcome {
            InsertUser::Created(user) => return Ok(*user),
            InsertUser::Conflict("username") if p.username.is_none() => continue,
            InsertUser::Conflict(what) => {
                let what = if what == "phone" { "phone number" } else { what };
                return Err(ApiError::Conflict(format!(
                    "an account with this {what} already exists"
                )));
            }
        }
    }
    Err(ApiError::Conflict(
        "could not generate a free username; send one".into(),
    ))
}

/// argon2id with its default parameters, off the async threads (~50 ms).
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    let hash = tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&crypto::random_bytes::<16>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("password hashing task failed: {e}"))??;
    Ok(hash)
}

/// A fixed argon2id hash checked when the account is unknown or has no
/// password, so a wrong login costs the same time as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2VzYW1lLWR1bW15LXNhbHQ$0zjXO1o3WjV0xKzcLZWBaMwNukWm1Zc0J7d+8QnVjJk";

/// Checks a password against an argon2id hash, off the async threads.
pub async fn verify_password(hash: Option<String>, password: String) -> Result<bool, ApiError> {
    let (hash, real) = match hash {
        Some(h) => (h, true),
        None => (DUMMY_HASH.to_string(), false),
    };
    let ok = tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("password check task failed: {e}"))?;
    Ok(ok && real)
}

/// `PATCH /api/v1/user/`: the signed-in user (Bearer token from any grant)
/// sets a username and/or password, as the original DRF project allowed.
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
    let body = read_body(&mut payload, body_limit(&http)).await?;
    let Value::Object(body) =
        serde_json::from_slice::<Value>(&body).map_err(|e| invalid_request(format!("malformed JSON body: {e}")))?
    else {
        return Err(invalid_request("the body must be a JSON object"));
    };
    if let Some(other) = body.keys().find(|k| !["username", "password"].contains(&k.as_str())) {
        return Err(invalid_request(format!(
            "`{other}` cannot be changed here (username, password)"
        )));
    }
    let updated = set_credentials(
        &state,
        &user,
        str_field(&body, "username")?,
        str_field(&body, "password")?,
    )
    .await?;
    Ok(HttpResponse::Ok().json(user_json(&updated)))
}

/// Sets a username and/or password for a signed-in user (the API's PATCH and
/// the account page): the username must be free (case-insensitive), the
/// password 8 to 128 characters, stored as argon2id.
pub async fn set_credentials(
    state: &AppState,
    user: &User,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<User, ApiError> {
    let username = username.map(valid_username).transpose()?;
    let password = match password {
        Some(pw) if (8..=128).contains(&pw.chars().count()) => Some(hash_password(pw.to_string()).await?),
        Some(_) => return Err(invalid_request("`password` must be 8 to 128 characters")),
        None => None,
    };
    if username.is_none() && password.is_none() {
        return Err(invalid_request("send `username`, `password` or both"));
    }
    match state
        .store
        .set_credentials(&user.id, username.as_deref(), password.as_deref())
        .await?
    {
        InsertUser::Created(updated) => {
            let e = Event {
                event: "credentials_changed",
                user_id: Some(&user.id),
                ..Default::default()
            };
            state.audit.record(e);
            Ok(*updated)
        }
        InsertUser::Conflict(_) => Err(ApiError::Conflict("this username is taken".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_real_argon2id_hash_so_unknown_logins_cost_the_same() {
        let parsed = argon2::password_hash::PasswordHash::new(DUMMY_HASH).expect("parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }

    #[tokio::test]
    async fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(verify_password(Some(hash.clone()), "correct horse battery".into())
            .await
            .unwrap());
        assert!(!verify_password(Some(hash), "wrong".into()).await.unwrap());
        assert!(!verify_password(None, "correct horse battery".into()).await.unwrap());
    }
}
