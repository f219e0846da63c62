//! `Params`: request parameters from a form-encoded or JSON body, with the
//! body size capped and repeated parameters refused (RFC 6749 §3.1, §3.2).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::web::BytesMut;
use actix_web::{dev::Payload, FromRequest, HttpRequest};
use futures_util::StreamExt;

use crate::error::{invalid_request, ApiError};
use crate::state::AppState;

#[derive(Default)]
pub struct Params(HashMap<String, String>);

/// Parameter names only: values include secrets, codes and tokens.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Params {
    /// The parameter, or `None` when absent or empty (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| invalid_request(format!("missing parameter `{name}`")))
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Params, ApiError> {
        let mut map: HashMap<String, String> = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            if k == "resource" && (v.is_empty() || v.chars().any(char::is_whitespace)) {
                return Err(ApiError::InvalidTarget(
                    "each `resource` must be one absolute URI (RFC 8707 §2)".into(),
                ));
            }
            match map.get_mut(&k) {
                // RFC 8707 §2: `resource` may be given several times; URIs hold no spaces.
                Some(values) if k == "resource" => {
                    values.push(' ');
                    values.push_str(&v);
                }
                Some(_) => return Err(invalid_request(format!("parameter `{k}` is repeated"))),
                None => {
                    map.insert(k, v);
                }
            }
        }
        Ok(Params(map))
    }

    /// Every value of a parameter that may repeat (`resource`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .get(name)
            .map(|v| v.split(' ').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }

    /// Reads a body of `content_type` (a form, or a JSON object of scalars).
    pub fn parse(content_type: &str, body: &[u8]) -> Result<Params, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params::default());
        }
        let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime == "application/json" || mime.ends_with("+json") {
            let serde_json::Value::Object(object) = strict_json(body)? else {
                return Err(invalid_request("JSON body must be an object"));
            };
            let mut pairs = Vec::with_capacity(object.len());
            for (k, v) in object {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => continue,
                    serde_json::Value::Bool(_) | serde_json::Value::Number(_) => v.to_string(),
                    _ => return Err(invalid_request(format!("parameter `{k}` must be a string"))),
                };
                pairs.push((k, text));
            }
            return Params::from_pairs(pairs);
        }
        if mime.is_empty() || mime == "application/x-www-form-urlencoded" {
            return Params::from_pairs(form_pairs(body)?);
        }
        Err(invalid_request(format!(
            "unsupported content type `{mime}`: send application/x-www-form-urlencoded or application/json"
        )))
    }
}

/// The name-value pairs of a form body or query string (`+` is a space,
/// `%XX` a byte), refusing a name or value whose bytes are not UTF-8:
/// decoded lossily, `email=%ff%fe@example.com` became `��@example.com`,
/// and a code went there.
pub fn form_pairs(input: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    input
        .split(|b| *b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = match part.iter().position(|b| *b == b'=') {
                Some(at) => (&part[..at], &part[at + 1..]),
                None => (part, &[][..]),
            };
            Ok((form_decoded(name)?, form_decoded(value)?))
        })
        .collect()
}

/// One form-encoded name or value (`+` is a space, `%XX` a byte), or
/// `None` when its bytes are not UTF-8. Also HTTP Basic's id and secret
/// (RFC 6749 §2.3.1).
pub fn form_decode(raw: &[u8]) -> Option<String> {
    let spaced: Vec<u8> = raw.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect();
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn form_decoded(raw: &[u8]) -> Result<String, ApiError> {
    form_decode(raw).ok_or_else(|| invalid_request("malformed form body: a parameter is not UTF-8"))
}

/// A JSON body, refusing a name repeated in any object: serde_json keeps
/// the last, so `{"email":"a@…","email":"b@…"}` quietly meant `b@…` where
/// a repeated form parameter is refused.
pub fn strict_json(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    strict_value(body).map_err(|e| invalid_request(format!("malformed JSON body: {e}")))
}

fn strict_value(body: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(body);
    Strict.deserialize(&mut de).and_then(|v| de.end().map(|()| v))
}

/// Builds a `serde_json::Value` as serde_json does, but errs on a repeated name.
struct Strict;

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(Strict)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if object.contains_key(&name) {
                return Err(serde::de::Error::custom(format!("`{name}` is repeated")));
            }
            let value = map.next_value_seed(Strict)?;
            object.insert(name, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_body<S, E>(payload: &mut S, limit: usize) -> Result<BytesMut, ApiError>
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
{
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| invalid_request("the request body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The client's address (SPEC §10): the TCP peer, or what the
/// `server.trusted_proxies` in front of Sesame forwarded (`X-Forwarded-For`,
/// else `Forwarded`), read right to left through trusted hops.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<actix_web::web::Data<AppState>>()
        .map(|s| s.settings.server.trusted_proxies.as_slice())
        .unwrap_or_default();
    // Every line is read, even one with bytes that are not text (a proxy
    // appends its hop to whatever the client sent): dropping it would hide
    // the proxy's own entry and let a client-written `Forwarded` speak.
    let values = |name: &str| -> Vec<String> {
        req.headers()
            .get_all(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    let (xff, forwarded) = match trusted.is_empty() {
        true => (vec![], vec![]),
        false => (values("x-forwarded-for"), values("forwarded")),
    };
    let xff: Vec<&str> = xff.iter().map(String::as_str).collect();
    let forwarded: Vec<&str> = forwarded.iter().map(String::as_str).collect();
    let ip = crate::net::client_address(peer, &xff, &forwarded, trusted);
    Some(ip.to_string())
}

pub fn body_limit(req: &HttpRequest) -> usize {
    req.app_data::<actix_web::web::Data<AppState>>()
        .map(|s| s.settings.server.max_body_bytes)
        .unwrap_or(64 * 1024)
}

impl FromRequest for Params {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Params, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = body_limit(req);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut payload = payload.take();
        Box::pin(async move {
            let body = read_body(&mut payload, limit).await?;
            Params::parse(&content_type, &body)
        })
    }
}

/// A JSON body that must be an object, read into `T` (serde would also take
/// an array for a struct, field by field: `[null, null]`).
pub fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let value = strict_value(body).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("the body must be a JSON object".into());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_json_give_the_same_params() {
        let f = Params::parse("application/x-www-form-urlencoded", b"a=1&b=x+y").unwrap();
        let j = Params::parse("application/json; charset=utf-8", br#"{"a":1,"b":"x y"}"#).unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), Some("x y"));
        assert_eq!(j.get("a"), Some("1"));
        assert_eq!(j.get("b"), Some("x y"));
    }

    #[test]
    fn debug_output_shows_names_not_values() {
        let p = Params::parse(
            "application/x-www-form-urlencoded",
            b"client_secret=hunter2&code=123456",
        )
        .unwrap();
        let shown = format!("{p:?}");
        assert!(shown.contains("client_secret") && !shown.contains("hunter2") && !shown.contains("123456"));
    }

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(Params::parse("application/x-www-form-urlencoded", b"a=1&a=2").is_err());
    }

    #[test]
    fn forms_decode_plus_and_percent_escapes_and_refuse_bytes_that_are_not_utf8() {
        let pairs = form_pairs(b"a=x+y%2Bz&b=%C3%A9%&c&d=1=2&&e=%4").unwrap();
        let want = [("a", "x y+z"), ("b", "é%"), ("c", ""), ("d", "1=2"), ("e", "%4")];
        let got: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
        for bad in [&b"email=%ff%fe@example.com"[..], b"%80=1", b"a=\xff", b"state=%C3"] {
            assert!(
                matches!(form_pairs(bad), Err(ApiError::InvalidRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(form_pairs(&[b'a', b'=', 0xff]).is_err(), "a raw byte too");
    }

    #[test]
    fn a_name_repeated_in_any_json_object_is_refused() {
        let once = strict_json(br#"{"a":1,"b":{"c":[1,2.5,null,true,"x"]}}"#).unwrap();
        assert_eq!(once, serde_json::json!({"a":1,"b":{"c":[1,2.5,null,true,"x"]}}));
        for twice in [
            &br#"{"email":"a@example.com","email":"b@example.com"}"#[..],
            br#"{"a":null,"a":null}"#,
            br#"{"account":{"phone":"1","phone":"2"}}"#,
            br#"[{"x":1,"x":1}]"#,
        ] {
            let e = strict_json(twice).unwrap_err();
            assert!(e.description().contains("is repeated"), "{}", e.description());
        }
        assert!(
            strict_json(br#"{"a":1} {"a":2}"#).is_err(),
            "one value, nothing after it"
        );
        let e = Params::parse(
            "application/json",
            br#"{"email":"a@example.com","email":"b@example.com"}"#,
        );
        assert!(matches!(e, Err(ApiError::InvalidRequest(_))));
    }

    #[test]
    fn malformed_bodies_are_invalid_requests() {
        assert!(matches!(
            Params::parse("application/json", b"{"),
            Err(ApiError::InvalidRequest(_))
        ));
        assert!(matches!(
            Params::parse("application/json", b"[1]"),
            Err(ApiError::InvalidRequest(_))
        ));
        assert!(matches!(
            Params::parse("text/plain", b"x"),
            Err(ApiError::InvalidRequest(_))
        ));
    }
}
