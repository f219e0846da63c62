//! `GET /openapi.json` (the OTP API and the admin API, OpenAPI 3.1) and
//! `GET /api`, the same document as a readable page (no CDN, no Swagger UI
//! bundle: rendered on the server from the one document).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde_json::Value;

use super::i18n::T;
use super::page::{self, Flash};

pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(OPENAPI)
}

pub struct Operation {
    pub method: String,
    pub path: String,
    pub summary: String,
    pub description: String,
    pub auth: String,
    pub fields: Vec<String>,
    pub responses: Vec<String>,
}

pub struct Section {
    pub name: String,
    pub operations: Vec<Operation>,
}

#[derive(Template)]
#[template(path = "pages/api.html")]
struct ApiPage {
    t: T,
    flash: Option<Flash>,
    title: &'static str,
    description: &'static str,
    sections: &'static [Section],
}

/// The document, parsed once.
struct Parsed {
    title: String,
    description: String,
    sections: Vec<Section>,
}

fn parsed() -> &'static Parsed {
    static PARSED: std::sync::OnceLock<Parsed> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap_or_default();
        let text = |ptr: &str| doc.pointer(ptr).and_then(Value::as_str).unwrap_or("").to_string();
        Parsed {
            title: text("/info/title"),
            description: text("/info/description"),
            sections: sections(&doc),
        }
    })
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The operations of the document, grouped by tag, in document order.
pub fn sections(doc: &Value) -> Vec<Section> {
    let mut sections: Vec<Section> = vec![];
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return sections;
    };
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let tag = op
                .get("tags")
                .and_then(|t| t.get(0))
                .and_then(Value::as_str)
                .unwrap_or("Other")
                .to_string();
            let body = op
                .pointer("/requestBody/content")
                .and_then(Value::as_object)
                .and_then(|c| c.values().next())
                .and_then(|m| m.get("schema"));
            let required: Vec<&str> = body
                .and_then(|s| s.get("required"))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut fields: Vec<String> = body
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|p| {
                    p.keys()
                        .map(|k| {
                            if required.contains(&k.as_str()) {
                                format!("{k} (required)")
                            } else {
                                k.clone()
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten() {
                fields.push(format!("{} (query)", text(p, "name")));
            }
            let auth = op
                .get("security")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .filter_map(|r| r.as_object().and_then(|o| o.keys().next().cloned()))
                        .map(|k| match k.as_str() {
                            "clientBasic" => "client id and secret (HTTP Basic, or both in the body)".to_string(),
                            "bearer" => "Bearer access token".to_string(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(" or ")
                })
                .unwrap_or_default();
            let responses = op
                .get("responses")
                .and_then(Value::as_object)
                .map(|r| {
                    r.iter()
                        .map(|(code, v)| {
                            let d = text(v, "description");
                            if d.is_empty() {
                                code.clone()
                            } else {
                                format!("{code} {d}")
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let operation = Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                summary: text(op, "summary"),
                description: text(op, "description"),
                auth,
                fields,
                responses,
            };
            match sections.iter_mut().find(|s| s.name == tag) {
                Some(s) => s.operations.push(operation),
                None => sections.push(Section {
                    name: tag,
                    operations: vec![operation],
                }),
            }
        }
    }
    sections
}

pub async fn api_page(req: HttpRequest) -> HttpResponse {
    let doc = parsed();
    page::ok(&ApiPage {
        t: page::texts(&req, None),
        flash: None,
        title: &doc.title,
        description: &doc.description,
        sections: &doc.sections,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_parses_and_lists_every_api() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let sections = super::sections(&doc);
        let mut names: Vec<&str> = sections.iter().map(|s| s.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["Admin API", "OAuth 2.0 / OIDC", "OTP API", "Operations"]);
        assert!(sections.iter().map(|s| s.operations.len()).sum::<usize>() >= 30);
        assert!(
            doc.pointer("/components/securitySchemes/clientPost").is_none(),
            "client secrets never go in the query"
        );
    }
}
