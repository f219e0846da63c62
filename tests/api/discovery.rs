use serde_json::Value;

use crate::db_test;
use crate::helpers::{spawn_app, Db};

db_test!(
    discovery_is_served_at_both_well_known_paths,
    health_endpoints_answer,
    jwks_lists_a_current_key_per_algorithm,
    metrics_count_requests_codes_and_tokens,
);

async fn discovery_is_served_at_both_well_known_paths(db: Db) {
    let app = spawn_app(&db).await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration/",
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        let doc: Value = res.json().await.unwrap();
        assert_eq!(doc["issuer"], app.address.as_str());
        assert_eq!(doc["token_endpoint"], app.url("/oauth2/token"));
        assert_eq!(doc["jwks_uri"], app.url("/oauth2/jwks"));
        assert_eq!(doc["introspection_endpoint"], app.url("/oauth2/introspect"));
        assert_eq!(doc["revocation_endpoint"], app.url("/oauth2/revoke"));
        let grants: Vec<&str> = doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for grant in [
            "client_credentials",
            "otp",
            "urn:sesame:params:oauth:grant-type:otp",
            "refresh_token",
        ] {
            assert!(grants.contains(&grant), "{grant} in {grants:?}");
        }
        assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    }
}

async fn health_endpoints_answer(db: Db) {
    let app = spawn_app(&db).await;
    assert_eq!(app.get("/health/live").await.status(), 200);
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    app.state.store.close().await;
    assert_eq!(app.get("/health/ready").await.status(), 503);
}

async fn jwks_lists_a_current_key_per_algorithm(db: Db) {
    let app = spawn_app(&db).await;
    let res = app.get("/oauth2/jwks").await;
    assert_eq!(res.status(), 200);
    let jwks: Value = res.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    for (alg, kty) in [("RS256", "RSA"), ("ES256", "EC"), ("EdDSA", "OKP")] {
        let key = keys
            .iter()
            .find(|k| k["alg"] == alg)
            .unwrap_or_else(|| panic!("{alg} key"));
        let current = app.state.keys.ring();
        let current = current.current_kid(sesame::config::SigningAlg::parse(alg).unwrap());
        assert_eq!(key["kid"].as_str(), current);
        assert_eq!(key["kty"], kty);
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "no private part ({private}) in the JWKS");
        }
    }
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_start} in\n{text}"))
}

async fn metrics_count_requests_codes_and_tokens(db: Db) {
    let app = spawn_app(&db).await;
    app.service_token().await;
    app.service_token().await;
    assert_eq!(
        app.client_credentials(crate::helpers::SVC, Some("nope")).await.status(),
        400
    );
    assert_eq!(
        app.getcode(crate::helpers::APP, crate::helpers::Who::Email("m@example.com"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.verifycode(
            crate::helpers::APP,
            crate::helpers::Who::Email("m@example.com"),
            "000000"
        )
        .await
        .status(),
        400
    );
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    assert_eq!(
        metric(&text, "sesame_tokens_issued_total{grant=\"client_credentials\"}"),
        2
    );
    assert_eq!(metric(&text, "sesame_codes_sent_total{channel=\"email\"}"), 1);
    assert_eq!(metric(&text, "sesame_code_failures_total"), 1);
    assert_eq!(metric(&text, "sesame_http_requests_total{status=\"2xx\"}"), 3);
    assert_eq!(metric(&text, "sesame_http_requests_total{status=\"4xx\"}"), 2);
    assert_eq!(metric(&text, "sesame_http_request_duration_seconds_count"), 5);
}
