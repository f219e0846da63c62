//! `/openapi.json` describes routes that exist, and `/api` shows them.

use serde_json::Value;

use crate::db_test;
use crate::helpers::{spawn_app, Db};

async fn every_documented_operation_is_routed(db: Db) {
    let app = spawn_app(&db).await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{client_id}", "no-such-client")
            .replace("{sub}", "no-such-user");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let res = app
                .http
                .request(method.to_uppercase().parse().unwrap(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            // Unauthenticated calls are refused (401/400), never "no such route".
            assert!(
                status != 404 && status != 405,
                "{} {path}: {status}",
                method.to_uppercase()
            );
            seen += 1;
        }
    }
    assert!(seen >= 15, "{seen} operations");

    let page = app.get("/api").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for needle in [
        "/otp/getcode/",
        "/admin/api/clients/{client_id}/secret",
        "/api/v1/user/",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
}

db_test!(every_documented_operation_is_routed);
