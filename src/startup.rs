//! Builds the application: store, migrations, clients file, keys, routes.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_session::SessionMiddleware;
use actix_web::dev::Server;
use actix_web::dev::Service;
use actix_web::middleware::{Condition, DefaultHeaders, NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;

use crate::config::Settings;

/// The response header that names the request in the logs (its span's `id`).
const REQUEST_ID: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-request-id");
use crate::crypto::{self, Digester};
use crate::error::ApiError;
use crate::jose::Keys;
use crate::oauth::revocations::Revocations;
use crate::state::AppState;
use crate::store::{Backend, Store};
use crate::{api, clients, health, oauth, oidc, web as pages};

/// How often each node re-reads the signing keys (rotations reach every node within this).
const KEY_RELOAD: Duration = Duration::from_secs(30);

pub struct Application {
    port: u16,
    server: Server,
    pub state: Arc<AppState>,
}

/// Opens the store and applies migrations (also `sesame migrate`); behind
/// a transaction-mode pooler, checks that they were applied.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let db = &settings.database;
    let store = Store::open(&db.url, db.max_connections, transaction_pooler(settings)).await?;
    match transaction_pooler(settings) {
        true => store.check_migrated().await?,
        false => {
            store.refuse_unannounced_transaction_pooler().await?;
            store.migrate().await?;
        }
    }
    crate::accounts::canonical_email_keys(&store).await?;
    Ok(store)
}

fn transaction_pooler(settings: &Settings) -> bool {
    settings.database.pooler == crate::config::Pooler::Transaction
}

/// How long a retired key stays published: the longest life of a token it signed, plus slack.
pub fn key_retention(settings: &Settings) -> Duration {
    settings.tokens.access_ttl + Duration::from_secs(300)
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(&settings.server.bind).with_context(|| {
            format!(
                "cannot listen on {} (configuration key `server.bind`)",
                settings.server.bind
            )
        })?;
        Self::build_with_listener(settings, listener).await
    }

    pub async fn build_with_listener(settings: Settings, listener: TcpListener) -> anyhow::Result<Application> {
        settings.check_development_delivery()?;
        crate::accounts::passwords::init(settings.passwords.max_concurrent_hashes);
        let store = open_store(&settings)
            .await?
            .with_client_cache(settings.server.client_cache);
        let n = clients::file::apply(&store, &settings.clients_file, settings.issuer()).await?;
        tracing::info!(clients = n, file = %settings.clients_file.display(), "applied the clients file");
        let keys = Arc::new(Keys::load(store.clone()).await?);
        let digest_key = store
            .server_secret("digest_key", crypto::hex(&crypto::random_bytes::<32>()))
            .await?;
        let digester = Digester::new(decode_key(&digest_key)?);
        let cookie_key = store
            .server_secret("session_cookie_key", crypto::hex(&crypto::random_bytes::<64>()))
            .await?;
        let cookie_key: [u8; 64] = decode_key(&cookie_key)?;
        let discovery = serde_json::to_vec(&oidc::discovery::document(&settings))?.into();
        let delivery = crate::delivery::Delivery::from_settings(&settings)?;
        let bot_check = crate::abuse::BotCheck::from_settings(&settings.abuse)?;
        let revocations =
            Revocations::load(&store, settings.server.revocation_sync, settings.tokens.access_ttl).await?;
        // On PostgreSQL the audit writer has a connection of its own, opened
        // from its own task: pooled connections opened by a request belong
        // to that worker's runtime, which is gone by the final flush.
        let audit_store = match store.backend {
            Backend::Sqlite => store.clone(),
            Backend::Postgres => Store::open(&settings.database.url, Some(1), transaction_pooler(&settings)).await?,
        };
        let audit = crate::audit::AuditLog::start(audit_store);
        let backchannel = crate::oidc::backchannel::Backchannel::start(
            store.clone(),
            keys.clone(),
            settings.issuer().to_string(),
            Some(audit.clone()),
        )?;
        let state = Arc::new(AppState {
            settings,
            store,
            keys,
            digester,
            delivery,
            revocations,
            audit,
            metrics: Default::default(),
            bot_check,
            backchannel,
            discovery,
        });
        spawn_maintenance(state.clone());
        crate::retention::spawn(state.clone());

        let port = listener.local_addr()?.port();
        let workers = state
            .settings
            .server
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let app_state = state.clone();
        let https = state.settings.https();
        let server = HttpServer::new(move || {
            let sessions = pages::session::middleware(&app_state, &cookie_key);
            App::new()
                .app_data(web::Data::from(app_state.clone()))
                .app_data(query_errors())
                .wrap(NormalizePath::new(TrailingSlash::Trim))
                .wrap_fn(|req, srv| {
                    let started = std::time::Instant::now();
                    let state = req.app_data::<web::Data<AppState>>().cloned();
                    // Every log line of the request, its audit events' among
                    // them, carries its id, method and path (never the query:
                    // a magic link's token travels there).
                    let id = crate::telemetry::request_id();
                    // (At error level, so that it is on whatever the filter.)
                    let span = tracing::error_span!("request", id = %id, method = %req.method(), path = req.path());
                    let answer = {
                        let _entered = span.enter();
                        crate::audit::in_scope(srv.call(req))
                    };
                    let answered = async move {
                        let (res, events) = answer.await;
                        let res = match res {
                            Ok(res) => res,
                            Err(e) => {
                                // An error answer: what it did is still recorded.
                                if let Some(state) = &state {
                                    let _ = state.audit.write(&state.store, events).await;
                                }
                                return Err(e);
                            }
                        };
                        let mut res = res.map_into_boxed_body();
                        if let Some(state) = state {
                            // The request's audit events are written before it is answered.
                            if let Err(e) = state.audit.write(&state.store, events).await {
                                tracing::error!(error = format!("{e:#}"), "could not write the request's audit events");
                                res = audit_unavailable(res.request().clone());
                            }
                            state.metrics.request(res.status().as_u16(), started.elapsed());
                        }
                        if let Ok(id) = actix_web::http::header::HeaderValue::from_str(&id) {
                            res.headers_mut().insert(REQUEST_ID, id);
                        }
                        Ok(res)
                    };
                    tracing::Instrument::instrument(answered, span)
                })
                .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
                // SPEC §9: on an https issuer every answer asks for https only.
                .wrap(Condition::new(
                    https,
                    DefaultHeaders::new().add(("Strict-Transport-Security", "max-age=31536000")),
                ))
                .configure(routes)
                .configure(|cfg| page_routes(cfg, sessions))
                .default_service(web::to(not_found))
        })
        .workers(workers)
        .listen(listener)?
        .shutdown_timeout(10)
        .run();
        Ok(Application { port, server, state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests and the
    /// audit queue (graceful shutdown).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.state.audit.flush().await;
        result
    }
}

/// The answer to a request whose audit events could not be written: it did
/// not happen as far as the caller knows (503, try again), on the pages a page.
fn audit_unavailable(req: actix_web::HttpRequest) -> actix_web::dev::ServiceResponse {
    let wants_page = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let res = if wants_page {
        pages::page::unavailable()
    } else {
        actix_web::ResponseError::error_response(&ApiError::Unavailable(
            "the audit trail could not be written; try again shortly".into(),
        ))
    };
    actix_web::dev::ServiceResponse::new(req, res)
}

fn decode_key<const N: usize>(hex: &str) -> anyhow::Result<[u8; N]> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .context("a stored server key is corrupt")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a stored server key has the wrong length"))
}

fn spawn_maintenance(state: Arc<AppState>) {
    let sync = state.revocations.sync_interval();
    if !sync.is_zero() {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sync);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = state.revocations.reload(&state.store).await {
                    tracing::warn!(error = format!("{e:#}"), "could not reload the revocation list");
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEY_RELOAD);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = state.keys.reload().await {
                tracing::warn!(error = format!("{e:#}"), "could not reload signing keys");
            }
        }
    });
}

/// A query string that does not parse is a JSON `400 invalid_request`
/// naming the parameter, not actix's plain-text answer.
fn query_errors() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let why = match &err {
            actix_web::error::QueryPayloadError::Deserialize(e) => format!("the query string is not valid: {e}"),
            _ => "the query string is not valid".into(),
        };
        ApiError::InvalidRequest(why).into()
    })
}

/// A resource whose other methods answer a JSON 405 with `Allow` naming
/// the ones it serves (RFC 9110 §15.5.6).
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut res = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed);
        res.headers_mut().insert(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_static(allow),
        );
        Ok::<_, actix_web::Error>(res)
    }))
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/.well-known/openid-configuration", "GET").route(web::get().to(oidc::discovery::discovery)))
        .service(
            resource("/.well-known/oauth-authorization-server", "GET").route(web::get().to(oidc::discovery::discovery)),
        )
        .service(resource("/oauth2/jwks", "GET").route(web::get().to(oidc::jwks::jwks)))
        .service(resource("/oauth2/token", "POST").route(web::post().to(oauth::token::token)))
        .service(resource("/oauth2/introspect", "POST").route(web::post().to(oauth::introspect::introspect)))
        .service(resource("/oauth2/revoke", "POST").route(web::post().to(oauth::revoke::revoke)))
        .service(resource("/o/extended_token", "POST").route(web::post().to(oauth::token::extended_token)))
        .service(
            resource("/oauth2/userinfo", "GET, POST")
                .route(web::get().to(oidc::userinfo::userinfo))
                .route(web::post().to(oidc::userinfo::userinfo)),
        )
        .service(resource("/otp/getcode", "POST").route(web::post().to(api::otp::getcode)))
        .service(resource("/otp/verifycode", "POST").route(web::post().to(api::otp::verifycode)))
        .service(
            resource("/api/v1/user", "PUT, PATCH")
                .route(web::put().to(api::users::create_user))
                .route(web::patch().to(api::users::update_credentials)),
        )
        .service(resource("/api/v1/users", "POST").route(web::post().to(api::users::create_user)))
        .service(
            resource("/admin/api/clients", "GET, POST")
                .route(web::get().to(api::admin::list))
                .route(web::post().to(api::admin::create)),
        )
        .service(
            resource("/admin/api/clients/{client_id}", "GET, PUT, DELETE")
                .route(web::get().to(api::admin::show))
                .route(web::put().to(api::admin::update))
                .route(web::delete().to(api::admin::delete)),
        )
        .service(
            resource("/admin/api/clients/{client_id}/secret", "POST").route(web::post().to(api::admin::rotate_secret)),
        )
        .service(resource("/admin/api/users", "GET").route(web::get().to(api::admin_users::list)))
        .service(
            resource("/admin/api/users/{sub}", "GET, PUT, DELETE")
                .route(web::get().to(api::admin_users::show))
                .route(web::put().to(api::admin_users::update))
                .route(web::delete().to(api::admin_users::delete)),
        )
        .service(resource("/dev/outbox", "GET").route(web::get().to(pages::outbox::outbox)))
        .service(resource("/metrics", "GET").route(web::get().to(crate::metrics::metrics)))
        .service(resource("/health/live", "GET").route(web::get().to(health::live)))
        .service(resource("/health/ready", "GET").route(web::get().to(health::ready)));
}

/// The browser pages, each behind the session middleware (the APIs never load a session).
fn page_routes(cfg: &mut web::ServiceConfig, sessions: SessionMiddleware<pages::session::DbSessions>) {
    use pages::{account, admin, consent, login};
    // Sessions outside, so that `form_targets` reads the session after the handler.
    let page = |path: &str, allow: &'static str| {
        resource(path, allow)
            .wrap(actix_web::middleware::from_fn(pages::page::form_targets))
            .wrap(sessions.clone())
            .wrap(actix_web::middleware::from_fn(pages::page::session_store_failures))
    };
    cfg.service(
        page("/oauth2/authorize", "GET, POST")
            .route(web::get().to(crate::web::authorize::authorize))
            .route(web::post().to(crate::web::authorize::authorize)),
    )
    .service(
        page("/oauth2/logout", "GET, POST")
            .route(web::get().to(oidc::logout::logout))
            .route(web::post().to(oidc::logout::logout)),
    )
    .service(
        page("/login", "GET, POST")
            .route(web::get().to(login::login_page))
            .route(web::post().to(login::send_code)),
    )
    .service(page("/login/password", "POST").route(web::post().to(login::password)))
    .service(
        page("/login/verify", "GET, POST")
            .route(web::get().to(login::verify_page))
            .route(web::post().to(login::verify_code)),
    )
    .service(page("/login/resend", "POST").route(web::post().to(login::resend)))
    .service(page("/login/status", "POST").route(web::post().to(login::status)))
    .service(page("/login/continue", "GET").route(web::get().to(login::continue_flow)))
    .service(
        page("/login/magic", "GET, POST")
            .route(web::get().to(login::magic_page))
            .route(web::post().to(login::magic_use)),
    )
    .service(
        page("/signup", "GET, POST")
            .route(web::get().to(login::signup_page))
            .route(web::post().to(login::signup)),
    )
    .service(
        page("/consent", "GET, POST")
            .route(web::get().to(consent::consent_page))
            .route(web::post().to(consent::decide)),
    )
    .service(page("/account", "GET").route(web::get().to(account::account)))
    .service(page("/account/profile", "POST").route(web::post().to(account::profile)))
    .service(page("/account/password", "POST").route(web::post().to(account::set_password)))
    .service(
        page("/account/identifier", "GET, POST")
            .route(web::get().to(account::change_identifier_page))
            .route(web::post().to(account::change_identifier)),
    )
    .service(page("/account/identifier/verify", "POST").route(web::post().to(account::verify_identifier)))
    .service(
        page("/account/reauth", "GET, POST")
            .route(web::get().to(pages::reauth::reauth_page))
            .route(web::post().to(pages::reauth::send)),
    )
    .service(page("/account/reauth/verify", "POST").route(web::post().to(pages::reauth::verify)))
    .service(
        page("/account/delete", "GET, POST")
            .route(web::get().to(account::confirm_delete))
            .route(web::post().to(account::delete_account)),
    )
    .service(page("/account/apps/revoke", "POST").route(web::post().to(account::revoke_app)))
    .service(page("/account/sessions/end", "POST").route(web::post().to(account::end_session)))
    .service(page("/account/signout", "POST").route(web::post().to(account::sign_out_here)))
    .service(page("/account/signout-everywhere", "POST").route(web::post().to(account::sign_out_everywhere)))
    .service(page("/admin", "GET").route(web::get().to(admin::home)))
    .service(page("/admin/clients", "GET").route(web::get().to(admin::clients_page)))
    .service(
        page("/admin/clients/new", "GET, POST")
            .route(web::get().to(admin::new_client_page))
            .route(web::post().to(admin::create_client)),
    )
    .service(
        page("/admin/clients/{id}", "GET, POST")
            .route(web::get().to(admin::client_page))
            .route(web::post().to(admin::update_client)),
    )
    .service(
        page("/admin/clients/{id}/{action}", "GET, POST")
            .route(web::get().to(admin::confirm_client))
            .route(web::post().to(admin::client_action)),
    )
    .service(page("/admin/users", "GET").route(web::get().to(admin::users_page)))
    .service(page("/admin/users/{sub}", "GET").route(web::get().to(admin::user_page)))
    .service(
        page("/admin/users/{sub}/{action}", "GET, POST")
            .route(web::get().to(admin::confirm_user_delete))
            .route(web::post().to(admin::user_action)),
    )
    .service(page("/admin/audit", "GET").route(web::get().to(admin::audit_page)))
    .service(resource("/", "GET").route(web::get().to(|| async { pages::page::found("/account") })))
    .service(resource("/openapi.json", "GET").route(web::get().to(pages::api_docs::openapi)))
    .service(resource("/api", "GET").route(web::get().to(pages::api_docs::api_page)))
    .service(resource("/static/sesame.css", "GET").route(web::get().to(pages::assets::css)))
    .service(resource("/static/sesame.js", "GET").route(web::get().to(pages::assets::js)));
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".into()))
}
