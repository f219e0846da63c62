//! Test harness: starts the real app on port 0 with a fresh database (a temp
//! SQLite file, or a fresh PostgreSQL schema when SESAME_TEST_POSTGRES_URL is
//! set), with a clients file of known clients.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use sesame::config::Settings;
use sesame::startup::Application;
use sesame::state::AppState;

/// Runs an `async fn(Db)` test on SQLite and, when configured, on PostgreSQL.
#[macro_export]
macro_rules! db_test {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Db::sqlite()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(sesame_test_postgres), ignore = "set SESAME_TEST_POSTGRES_URL to run the PostgreSQL half")]
            async fn postgres() {
                super::$name($crate::helpers::Db::postgres().await).await
            }
        }
    )+};
}

pub const SVC: (&str, &str) = ("svc", "svc-secret-0123456789abcdef");
pub const APP: (&str, &str) = ("app", "app-secret-0123456789abcdef");
/// A secret that needs form-encoding in HTTP Basic (RFC 6749 §2.3.1).
pub const ODD: (&str, &str) = ("odd.client", "p@ss:w0rd+plus/sl%sh é");
pub const SPA: &str = "spa";
/// A client allowed to get `sesame:admin` tokens.
pub const ADMIN: (&str, &str) = ("admin", "admin-secret-0123456789abcdef");
/// A second OTP client, for binding tests.
pub const APP2: (&str, &str) = ("app2", "app2-secret-0123456789abcdef");
/// An OTP client without refresh tokens: its access tokens belong to no family.
pub const NOREFRESH: (&str, &str) = ("norefresh", "norefresh-secret-0123456789abcdef");
/// An OTP client whose emails carry a magic link to its own URL.
pub const LINKED: (&str, &str) = ("linked", "linked-secret-0123456789abcdef");
pub const LINKED_URI: &str = "https://linked.example.com/signin?from=email";
/// A first-party app with every grant that lists `sesame:admin` and
/// `sesame:account`: what a token may carry is then up to the policy alone.
pub const ALL: (&str, &str) = ("all", "all-secret-0123456789abcdef");
/// The resource servers `all` may ask tokens for (RFC 8707).
pub const API: &str = "https://api.example.com";
pub const FILES: &str = "https://files.example.com/v1";
/// The operator's own (`first_party`) app: may get `sesame:account`.
pub const MINE: (&str, &str) = ("mine", "mine-secret-0123456789abcdef");

/// A fresh database; dropping it removes it.
pub struct Db {
    pub url: String,
    dir: PathBuf,
    pg_schema: Option<(String, String)>,
}

impl Db {
    pub fn sqlite() -> Db {
        let dir = std::env::temp_dir().join(format!("sesame-test-{}", sesame::crypto::random_token::<8>()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("sesame.db").display());
        Db {
            url,
            dir,
            pg_schema: None,
        }
    }

    /// A fresh schema of SESAME_TEST_POSTGRES_URL's database. Tests that
    /// call it are ignored in a build without that variable (`build.rs`); it
    /// panics (fails) when the variable is unset at run time or unreachable.
    pub async fn postgres() -> Db {
        let base = std::env::var("SESAME_TEST_POSTGRES_URL")
            .expect("SESAME_TEST_POSTGRES_URL was set when the tests were built; set it to run them");
        let schema = format!("t_{}", sesame::crypto::hex(&sesame::crypto::random_bytes::<8>()));
        run_pg(&base, &format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap_or_else(|e| panic!("SESAME_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {e}"));
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        let dir = std::env::temp_dir().join(format!("sesame-test-{schema}"));
        std::fs::create_dir_all(&dir).unwrap();
        Db {
            url,
            dir,
            pg_schema: Some((base, schema)),
        }
    }

    /// The PostgreSQL URL without the schema, and the schema.
    pub fn pg_schema(&self) -> Option<(&str, &str)> {
        self.pg_schema
            .as_ref()
            .map(|(base, schema)| (base.as_str(), schema.as_str()))
    }

    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    /// Runs SQL on this database from outside the app (to move its clock).
    pub async fn execute(&self, sql: &str) {
        match &self.pg_schema {
            Some(_) => run_pg(&self.url, sql).await.unwrap(),
            None => rusqlite::Connection::open(self.dir.join("sesame.db"))
                .and_then(|c| c.execute_batch(sql))
                .unwrap(),
        }
    }
}

impl Db {
    /// A number read from this PostgreSQL database from outside the app
    /// (`SELECT count(*) …`).
    pub async fn pg_number(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        let n = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        n
    }
}

async fn run_pg(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some((base, schema)) = self.pg_schema.take() {
            // A runtime of its own: Drop may run inside or outside one.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _ = rt.block_on(run_pg(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")));
            })
            .join();
        }
    }
}

pub fn clients_toml() -> String {
    let hash = |s: &str| sesame::domain::client::hash_secret(s);
    format!(
        r#"
[[client]]
id = "{svc}"
name = "Service"
secret_hash = "{svc_hash}"
grant_types = ["client_credentials"]
scopes = ["api:read", "api:write"]

[[client]]
id = "{app}"
name = "App"
secret_hash = "{app_hash}"
redirect_uris = ["http://localhost:3000/callback"]
post_logout_redirect_uris = ["http://localhost:3000/", "http://localhost:3000/logged-out?via=sesame"]
grant_types = ["otp", "authorization_code", "refresh_token", "password"]
scopes = ["openid", "profile", "email", "phone", "address", "offline_access"]

[[client]]
id = "{odd}"
name = "Odd"
secret_hash = "{odd_hash}"
grant_types = ["client_credentials"]
scopes = ["api:read"]

[[client]]
id = "{app2}"
name = "Second app"
secret_hash = "{app2_hash}"
grant_types = ["otp", "refresh_token"]
scopes = ["openid", "profile", "email", "phone", "address", "offline_access"]

[[client]]
id = "{admin}"
name = "Admin automation"
secret_hash = "{admin_hash}"
grant_types = ["client_credentials"]
scopes = ["sesame:admin"]

[[client]]
id = "{mine}"
name = "Our own app"
secret_hash = "{mine_hash}"
first_party = true
grant_types = ["otp", "refresh_token", "password"]
scopes = ["openid", "email", "phone", "offline_access", "sesame:account"]

[[client]]
id = "{linked}"
name = "Linked app"
secret_hash = "{linked_hash}"
grant_types = ["otp", "refresh_token"]
scopes = ["openid", "email"]
magic_link_uri = "{linked_uri}"

[[client]]
id = "{all}"
name = "Everything"
secret_hash = "{all_hash}"
first_party = true
redirect_uris = ["http://localhost:3000/callback"]
grant_types = ["otp", "authorization_code", "refresh_token", "password", "client_credentials"]
scopes = ["openid", "email", "sesame:admin", "sesame:account"]
resources = ["{api}", "{files}"]

[[client]]
id = "{norefresh}"
name = "No refresh"
secret_hash = "{norefresh_hash}"
grant_types = ["otp"]
scopes = ["openid", "email"]

[[client]]
id = "first"
name = "First party"
public = true
skip_consent = true
redirect_uris = ["http://localhost:4000/cb"]
grant_types = ["authorization_code"]
scopes = ["openid", "email"]

[[client]]
id = "{spa}"
name = "SPA"
public = true
redirect_uris = ["http://localhost:5173/cb"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "profile"]
"#,
        svc = SVC.0,
        svc_hash = hash(SVC.1),
        app = APP.0,
        app_hash = hash(APP.1),
        odd = ODD.0,
        odd_hash = hash(ODD.1),
        spa = SPA,
        app2 = APP2.0,
        admin = ADMIN.0,
        admin_hash = hash(ADMIN.1),
        app2_hash = hash(APP2.1),
        linked = LINKED.0,
        linked_hash = hash(LINKED.1),
        linked_uri = LINKED_URI,
        norefresh = NOREFRESH.0,
        norefresh_hash = hash(NOREFRESH.1),
        api = API,
        files = FILES,
        all = ALL.0,
        all_hash = hash(ALL.1),
        mine = MINE.0,
        mine_hash = hash(MINE.1),
    )
}

pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    pub state: Arc<AppState>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Settings for a test app on `db`: console delivery, one worker, known clients.
pub fn test_settings(db: &Db) -> Settings {
    let clients = db.dir().join("clients.toml");
    if !clients.exists() {
        std::fs::write(&clients, clients_toml()).unwrap();
    }
    let mut s = Settings::load_from(None, &[]).unwrap();
    s.database.url = db.url.clone();
    s.database.max_connections = Some(4);
    // Sweeps run when a test asks (`retention.rs`), not behind its back.
    s.database.retention_interval = std::time::Duration::ZERO;
    s.clients_file = clients;
    s.server.workers = Some(1);
    s
}

/// Webhook delivery to a closed port: for an https issuer, where `console`
/// delivery is refused (nothing is sent in tests that use it).
pub fn real_delivery(settings: &mut Settings) {
    use sesame::config::{EmailProvider, SmsProvider};
    settings.sms.provider = SmsProvider::Webhook;
    settings.sms.url = Some("http://127.0.0.1:9/sms".into());
    settings.email.provider = EmailProvider::Webhook;
    settings.email.url = Some("http://127.0.0.1:9/email".into());
}

pub async fn spawn_app(db: &Db) -> TestApp {
    spawn_with(test_settings(db)).await
}

pub async fn spawn_with(mut settings: Settings) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    if settings.issuer == Settings::default().issuer {
        settings.issuer = format!("http://127.0.0.1:{port}");
    }
    let app = Application::build_with_listener(settings, listener)
        .await
        .expect("the app starts");
    let state = app.state.clone();
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        state,
        server,
    }
}

pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_string();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// POSTs a form with HTTP Basic client authentication.
    pub async fn post_form(&self, path: &str, client: (&str, &str), form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("Authorization", basic(client.0, client.1))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// `grant_type=refresh_token` for `client`.
    pub async fn refresh(&self, client: (&str, &str), token: &str) -> reqwest::Response {
        self.post_form(
            "/oauth2/token",
            client,
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
        .await
    }

    pub async fn client_credentials(&self, client: (&str, &str), scope: Option<&str>) -> reqwest::Response {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        self.post_form("/oauth2/token", client, &form).await
    }

    /// A `client_credentials` access token for `svc`.
    pub async fn service_token(&self) -> String {
        let res = self.client_credentials(SVC, None).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    /// Introspection by `svc`, a resource server.
    pub async fn introspect(&self, token: &str) -> Value {
        self.introspect_as(SVC, token).await
    }

    /// Introspection by `client` (a refresh token answers only its own client).
    pub async fn introspect_as(&self, client: (&str, &str), token: &str) -> Value {
        let res = self.post_form("/oauth2/introspect", client, &[("token", token)]).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }
}

/// Asserts a JSON error response: status, `error` code and a description.
pub async fn assert_error(res: reqwest::Response, status: u16, error: &str) -> Value {
    assert_eq!(res.status(), status, "status for expected `{error}`");
    let body: Value = res.json().await.expect("a JSON error body");
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["error_description"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

/// Decodes a JWT's header and claims without checking the signature.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let mut next = || serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    (next(), next())
}

/// What a test asks a code for: a phone or an email.
#[derive(Clone, Copy)]
pub enum Who<'a> {
    Phone(&'a str),
    Email(&'a str),
}

impl Who<'_> {
    pub fn field(&self) -> (&'static str, &str) {
        match self {
            Who::Phone(p) => ("phone", p),
            Who::Email(e) => ("email", e),
        }
    }
}

impl TestApp {
    pub async fn getcode(&self, client: (&str, &str), who: Who<'_>) -> reqwest::Response {
        self.post_form("/otp/getcode/", client, &[who.field()]).await
    }

    pub async fn verifycode(&self, client: (&str, &str), who: Who<'_>, code: &str) -> reqwest::Response {
        self.post_form("/otp/verifycode/", client, &[who.field(), ("code", code)])
            .await
    }

    /// A token for the admin API (the `admin` client, scope `sesame:admin`).
    pub async fn admin_token(&self) -> String {
        let res = self.client_credentials(ADMIN, Some("sesame:admin")).await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The claims of a JWT this app signed, after checking its signature
    /// against the published JWKS with the algorithm its header names, as
    /// a relying party does.
    pub async fn verified_by_jwks(&self, token: &str) -> Value {
        use josekit::jws::{EdDSA, JwsVerifier, ES256, RS256};
        let (header, claims) = jwt_parts(token);
        let jwks: Value = self.get("/oauth2/jwks").await.json().await.unwrap();
        let key = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .expect("the token's kid is published");
        assert_eq!(key["alg"], header["alg"]);
        let jwk = josekit::jwk::Jwk::from_bytes(key.to_string()).unwrap();
        let verifier: Box<dyn JwsVerifier> = match header["alg"].as_str().unwrap() {
            "RS256" => Box::new(RS256.verifier_from_jwk(&jwk).unwrap()),
            "ES256" => Box::new(ES256.verifier_from_jwk(&jwk).unwrap()),
            "EdDSA" => Box::new(EdDSA.verifier_from_jwk(&jwk).unwrap()),
            other => panic!("unexpected alg {other}"),
        };
        josekit::jwt::decode_with_verifier(token, &*verifier).expect("the signature verifies with the JWKS key");
        claims
    }

    /// GET `path` with a Bearer token.
    pub async fn get_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    /// GET /oauth2/userinfo with a Bearer token.
    pub async fn userinfo(&self, token: &str) -> reqwest::Response {
        self.get_bearer("/oauth2/userinfo", token).await
    }

    /// The names of the newest audit events.
    pub async fn audit_event_names(&self) -> Vec<String> {
        self.state.audit.flush().await;
        self.state
            .store
            .audit_events(100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect()
    }

    /// The newest code console delivery put in the outbox.
    pub async fn outbox_code(&self) -> String {
        let entries: Value = self.get("/dev/outbox?format=json").await.json().await.unwrap();
        entries[0]["code"]
            .as_str()
            .expect("a message in the outbox")
            .to_string()
    }

    /// The newest code sent to `to` (or, when `to` is written otherwise
    /// than it was stored, the newest code): flows may run at once.
    pub async fn outbox_code_to(&self, to: &str) -> String {
        let entries: Value = self.get("/dev/outbox?format=json").await.json().await.unwrap();
        let entries = entries.as_array().expect("the outbox");
        let entry = entries.iter().find(|e| e["to"] == to).unwrap_or(&entries[0]);
        entry["code"].as_str().expect("a message in the outbox").to_string()
    }

    /// getcode + verifycode through the console outbox; returns the secret_identifier.
    pub async fn verified(&self, client: (&str, &str), who: Who<'_>) -> String {
        assert_eq!(self.getcode(client, who).await.status(), 200);
        let code = self.outbox_code_to(who.field().1).await;
        let res = self.verifycode(client, who, &code).await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["secret_identifier"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// getcode, then the code itself at the token endpoint (`grant_type=otp`).
    pub async fn sign_in_with_code(&self, client: (&str, &str), who: Who<'_>) -> reqwest::Response {
        assert_eq!(self.getcode(client, who).await.status(), 200);
        let code = self.outbox_code().await;
        self.post_form(
            "/oauth2/token",
            client,
            &[("grant_type", "otp"), who.field(), ("code", &code)],
        )
        .await
    }

    pub async fn create_user(&self, client: (&str, &str), body: &Value) -> reqwest::Response {
        self.http
            .put(self.url("/api/v1/user/"))
            .header("Authorization", basic(client.0, client.1))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn otp_token(&self, client: (&str, &str), who: Who<'_>, secret_identifier: &str) -> reqwest::Response {
        self.post_form(
            "/o/extended_token/",
            client,
            &[who.field(), ("secret_identifier", secret_identifier)],
        )
        .await
    }

    /// An account for a verified email, made through the account service directly.
    pub async fn account_for(&self, email: &str) -> sesame::store::users::User {
        let email = sesame::domain::Email::parse(email).unwrap();
        let profile = sesame::accounts::Profile::for_verified(&sesame::domain::Identifier::Email(email));
        sesame::accounts::Accounts::of(&self.state)
            .create(&profile, sesame::accounts::Actor::Cli, None)
            .await
            .unwrap()
    }

    /// `PATCH /api/v1/user/` with a Bearer token.
    pub async fn patch_user(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .patch(self.url("/api/v1/user/"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A user signed up through the OTP API; returns the token response.
    pub async fn signed_up(&self, client: (&str, &str), who: Who<'_>) -> Value {
        self.signed_up_with_scope(client, who, None).await
    }

    /// As `signed_up`, asking the token endpoint for `scope`.
    pub async fn signed_up_with_scope(&self, client: (&str, &str), who: Who<'_>, scope: Option<&str>) -> Value {
        let secret = self.verified(client, who).await;
        let res = self
            .create_user(
                client,
                &serde_json::json!({"secret_identifier": secret, "auto_username": true}),
            )
            .await;
        assert_eq!(res.status(), 201);
        let mut form = vec![who.field(), ("secret_identifier", secret.as_str())];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let res = self.post_form("/o/extended_token/", client, &form).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }
}
