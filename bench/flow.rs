//! Load generator for the OTP flow, each flow for a fresh email, with webhook
//! delivery to a receiver this program runs (so it can read the codes).
//! Reports complete flows per second.
//!
//!     cargo run --release --example flow -- BASE_URL RECEIVER_PORT CONCURRENCY SECONDS [signin|signup|signup_password]
//!
//! BASE_URL may list several nodes, comma-separated: requests go to them in
//! turn (round robin, request by request), as behind a load balancer.
//!
//! `signin` (default): getcode → verifycode → token, the account created at
//! the token step (`otp.auto_create_accounts`). `signup`: getcode →
//! verifycode → PUT /api/v1/user/ → token; `signup_password` with a password in the body.
//!
//! `bench/flow.sh` starts Sesame configured for it and runs this.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

type Codes = Arc<Mutex<HashMap<String, String>>>;

/// The nodes, taken in turn.
struct Nodes {
    urls: Vec<String>,
    next: AtomicUsize,
}

impl Nodes {
    fn pick(&self) -> &str {
        &self.urls[self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len()]
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).cloned().unwrap_or_else(|| "http://127.0.0.1:18080".into());
    let base = Arc::new(Nodes {
        urls: base.split(',').map(String::from).collect(),
        next: AtomicUsize::new(0),
    });
    let port: u16 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(18099);
    let concurrency: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(10);
    let mode = args.get(5).map(String::as_str).unwrap_or("signin");
    let signup = mode.starts_with("signup");
    let password = mode == "signup_password";
    let calls = if signup { 4 } else { 3 };

    let codes: Codes = Arc::default();
    let c = codes.clone();
    let server = HttpServer::new(move || {
        let c = c.clone();
        App::new().route(
            "/hook",
            web::post().to(move |body: web::Json<Value>| {
                let c = c.clone();
                async move {
                    let to = body["to"].as_str().unwrap_or("").to_string();
                    let code = body["code"].as_str().unwrap_or("").to_string();
                    c.lock().unwrap().insert(to, code);
                    HttpResponse::Ok().finish()
                }
            }),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", port))
    .expect("receiver port")
    .run();
    tokio::spawn(server);

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let run = std::process::id();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, base, codes) = (http.clone(), base.clone(), codes.clone());
        let (next, done, failed, latencies) = (next.clone(), done.clone(), failed.clone(), latencies.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let email = format!("bench{run}-{i}@example.com");
                let t = Instant::now();
                match flow(&http, &base, &codes, &email, signup, password).await {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        latencies.lock().unwrap().push(t.elapsed());
                    }
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("flow failed: {e}");
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    let n = done.load(Ordering::Relaxed);
    println!(
        "complete flows:       {n} in {elapsed:.1} s, {} failed",
        failed.load(Ordering::Relaxed)
    );
    println!("flows/s:              {:.0}", n as f64 / elapsed);
    println!(
        "requests/s:           {:.0} ({calls} per flow)",
        calls as f64 * n as f64 / elapsed
    );
    println!("flow latency ms:      p50 {:.1}  p99 {:.1}", pct(0.5), pct(0.99));
}

async fn flow(
    http: &reqwest::Client,
    base: &Nodes,
    codes: &Codes,
    email: &str,
    signup: bool,
    password: bool,
) -> Result<(), String> {
    let auth = ("demo", Some("demo-secret"));
    let ok = |r: reqwest::Response, want: u16| async move {
        if r.status().as_u16() == want {
            r.json::<Value>().await.map_err(|e| e.to_string())
        } else {
            Err(format!("{} {}", r.status(), r.text().await.unwrap_or_default()))
        }
    };
    let r = http
        .post(format!("{}/otp/getcode/", base.pick()))
        .basic_auth(auth.0, auth.1)
        .form(&[("email", email)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    ok(r, 200).await?;
    let code = codes.lock().unwrap().remove(email).ok_or("no code delivered")?;
    let r = http
        .post(format!("{}/otp/verifycode/", base.pick()))
        .basic_auth(auth.0, auth.1)
        .form(&[("email", email), ("code", &code)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let secret = ok(r, 200).await?["secret_identifier"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if signup {
        let mut body = json!({"secret_identifier": secret, "auto_username": true, "first_name": "Bench"});
        if password {
            // argon2id: 19 MiB a hash, at most passwords.max_concurrent_hashes at once.
            body["password"] = json!(format!("bench password for {email}"));
        }
        let r = http
            .put(format!("{}/api/v1/user/", base.pick()))
            .basic_auth(auth.0, auth.1)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        ok(r, 201).await?;
    }
    let r = http
        .post(format!("{}/o/extended_token/", base.pick()))
        .basic_auth(auth.0, auth.1)
        .form(&[("email", email), ("secret_identifier", &secret)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let tokens = ok(r, 200).await?;
    if tokens["access_token"].as_str().is_none() {
        return Err("no access token".into());
    }
    Ok(())
}
