//! The claims a scope releases about a user (OIDC Core §5.4), shared by the
//! ID token and userinfo so the two always agree.

use serde_json::{json, Map, Value};

use crate::domain::Scope;
use crate::store::users::User;

/// The scope that releases `claim` (OIDC Core §5.4); `None` for claims no
/// scope holds here (`sub` is always released).
pub fn scope_of(claim: &str) -> Option<&'static str> {
    match claim {
        "name" | "given_name" | "family_name" | "preferred_username" | "updated_at" => Some("profile"),
        "email" | "email_verified" => Some("email"),
        "phone_number" | "phone_number_verified" => Some("phone"),
        "address" => Some("address"),
        _ => None,
    }
}

pub fn for_scope(user: &User, scope: &Scope) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("sub".into(), user.id.clone().into());
    if scope.contains("profile") {
        let name = format!("{} {}", user.first_name, user.last_name).trim().to_string();
        if !name.is_empty() {
            c.insert("name".into(), name.into());
        }
        if !user.first_name.is_empty() {
            c.insert("given_name".into(), user.first_name.clone().into());
        }
        if !user.last_name.is_empty() {
            c.insert("family_name".into(), user.last_name.clone().into());
        }
        if let Some(u) = &user.username {
            c.insert("preferred_username".into(), u.clone().into());
        }
        c.insert("updated_at".into(), user.updated_at.into());
    }
    // A verified identifier, else an unverified contact marked as such (OIDC Core §5.1).
    if scope.contains("email") {
        if let Some(e) = user.email.as_ref().or(user.contact_email.as_ref()) {
            c.insert("email".into(), e.clone().into());
            c.insert("email_verified".into(), user.email.is_some().into());
        }
    }
    if scope.contains("phone") {
        if let Some(p) = user.phone.as_ref().or(user.contact_phone.as_ref()) {
            c.insert("phone_number".into(), p.clone().into());
            c.insert("phone_number_verified".into(), user.phone.is_some().into());
        }
    }
    if scope.contains("address") {
        let account = &user.metadata["account"];
        let formatted = account["address"].as_str();
        let postal = account["zip_code"].as_str();
        if formatted.is_some() || postal.is_some() {
            let mut a = json!({});
            if let Some(f) = formatted {
                a["formatted"] = f.into();
            }
            if let Some(p) = postal {
                a["postal_code"] = p.into();
            }
            c.insert("address".into(), a);
        }
    }
    c
}
