//! Real protocol peers the tests start: an HTTP receiver for webhook and
//! Twilio calls, and an SMTP server that holds a real SMTP conversation.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
    pub fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_bytes(&self.body).expect("a form body")
    }
}

/// An HTTP server that records every request and answers with `status`.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (g, s, d) = (got.clone(), status.clone(), delay_ms.clone());
        let server = HttpServer::new(move || {
            let (g, s, d) = (g.clone(), s.clone(), d.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (g, s, d) = (g.clone(), s.clone(), d.clone());
                async move {
                    let headers = req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
                    g.lock().unwrap().push(Received { path: req.path().to_string(), headers, body: body.to_vec() });
                    tokio::time::sleep(Duration::from_millis(d.load(Ordering::SeqCst))).await;
                    let code = s.load(Ordering::SeqCst);
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                        .json(serde_json::json!({"sid": "SM123", "message": if code >= 400 { "refused by the test" } else { "ok" }}))
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Receiver {
            url,
            got,
            status,
            delay_ms,
        }
    }

    /// Answer only after `delay` (a provider that hangs).
    pub fn delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// How many requests it got.
    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Every request so far.
    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The code in the newest message to `to`, if one came.
    pub fn code_for(&self, to: &str) -> Option<String> {
        let got = self.got.lock().unwrap();
        got.iter()
            .rev()
            .map(Received::json)
            .find(|m| m["to"] == to)
            .and_then(|m| m["code"].as_str().map(String::from))
    }

    /// The newest request, waiting briefly for it.
    pub async fn last(&self) -> Received {
        for _ in 0..50 {
            if let Some(r) = self.got.lock().unwrap().last().cloned() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the receiver got no request");
    }
}

/// One message the SMTP server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    /// The value of a header line (unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.data
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }

    /// The body with quoted-printable soft breaks and `=3D` undone.
    pub fn decoded(&self) -> String {
        self.data.replace("=\r\n", "").replace("=3D", "=")
    }
}

/// What the SMTP stand-in refuses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refuse {
    Nothing,
    /// Every recipient, with 550.
    Recipients,
    /// Every message, with 554 once its data has been sent (kept, so the
    /// test can read what was refused).
    Messages,
}

/// A minimal SMTP server (RFC 5321): EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
/// With `refuse` it rejects every recipient with 550.
#[derive(Clone)]
pub struct SmtpServer {
    pub url: String,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    pub async fn start(refuse: bool) -> SmtpServer {
        Self::start_refusing(if refuse { Refuse::Recipients } else { Refuse::Nothing }).await
    }

    /// One that takes every message's data and then rejects it (554).
    pub async fn start_rejecting_messages() -> SmtpServer {
        Self::start_refusing(Refuse::Messages).await
    }

    async fn start_refusing(refuse: Refuse) -> SmtpServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let m = mails.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(session(socket, m.clone(), refuse));
            }
        });
        SmtpServer { url, mails }
    }

    pub async fn last(&self) -> Mail {
        for _ in 0..100 {
            if let Some(m) = self.mails.lock().unwrap().last().cloned() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the SMTP server got no message");
    }
}

async fn session(socket: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>, refuse: Refuse) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    let _ = write.write_all(b"220 sesame-test ESMTP\r\n").await;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250-sesame-test\r\n250 8BITMIME".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().to_string();
            "250 OK".into()
        } else if upper.starts_with("RCPT TO:") {
            if refuse == Refuse::Recipients {
                "550 5.1.1 mailbox unavailable".into()
            } else {
                to.push(cmd[8..].trim().to_string());
                "250 OK".into()
            }
        } else if upper == "DATA" {
            let _ = write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            mails.lock().unwrap().push(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            match refuse {
                Refuse::Messages => "554 5.7.1 message rejected".into(),
                _ => "250 OK queued".into(),
            }
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            "250 OK".into()
        };
        if write.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// How the siteverify stand-in answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Success,
    Failure,
    /// Answers only after 5 s (longer than the tests' `bot_check_timeout`).
    Hang,
}

/// The forms siteverify was sent.
type Forms = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A stand-in for Turnstile / hCaptcha / reCAPTCHA: the siteverify protocol
/// (a form POST of `secret`, `response`, `remoteip`; a JSON answer with `success`).
#[derive(Clone)]
pub struct SiteVerify {
    pub url: String,
    got: Forms,
    verdict: Arc<Mutex<Verdict>>,
}

impl SiteVerify {
    pub async fn start() -> SiteVerify {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/siteverify", listener.local_addr().unwrap().port());
        let got: Forms = Arc::default();
        let verdict = Arc::new(Mutex::new(Verdict::Success));
        let (g, v) = (got.clone(), verdict.clone());
        let server = HttpServer::new(move || {
            let (g, v) = (g.clone(), v.clone());
            App::new().route(
                "/siteverify",
                web::post().to(move |body: web::Bytes| {
                    let (g, v) = (g.clone(), v.clone());
                    async move {
                        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
                        g.lock().unwrap().push(form);
                        let verdict = *v.lock().unwrap();
                        match verdict {
                            Verdict::Success => HttpResponse::Ok()
                                .json(serde_json::json!({"success": true, "hostname": "127.0.0.1", "error-codes": []})),
                            Verdict::Failure => HttpResponse::Ok()
                                .json(serde_json::json!({"success": false, "error-codes": ["invalid-input-response"]})),
                            Verdict::Hang => {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                                HttpResponse::Ok().json(serde_json::json!({"success": true}))
                            }
                        }
                    }
                }),
            )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        SiteVerify { url, got, verdict }
    }

    pub fn answer(&self, verdict: Verdict) {
        *self.verdict.lock().unwrap() = verdict;
    }

    /// The forms it was sent.
    pub fn calls(&self) -> Vec<Vec<(String, String)>> {
        self.got.lock().unwrap().clone()
    }
}

/// A TCP relay to a real server (PostgreSQL) that the test can cut, as an
/// outage does (the port stops accepting and open connections drop), or
/// blackhole (nothing goes through any more, and nothing says so).
pub struct Relay {
    pub addr: std::net::SocketAddr,
    upstream: String,
    tasks: Arc<Mutex<Option<tokio::task::JoinSet<()>>>>,
    /// Set while blackholed.
    silent: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Relay {
    pub async fn start(upstream: &str) -> Relay {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let relay = Relay {
            addr,
            upstream: upstream.to_string(),
            tasks: Arc::default(),
            silent: Arc::new(tokio::sync::watch::channel(false).0),
        };
        relay.restore().await;
        relay
    }

    /// Accepts again (after `cut`), or relays new connections again (after
    /// `blackhole`; the ones it silenced stay silent).
    pub async fn restore(&self) {
        self.silent.send_replace(false);
        if self.tasks.lock().unwrap().is_some() {
            return;
        }
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let upstream = self.upstream.clone();
        let silent = self.silent.clone();
        let mut set = tokio::task::JoinSet::new();
        let conns: Arc<Mutex<tokio::task::JoinSet<()>>> = Arc::default();
        let inner = conns.clone();
        set.spawn(async move {
            // The connections live in the accept task's set: aborting it drops them all.
            let _keep = conns;
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let mut silenced = silent.subscribe();
                inner.lock().unwrap().spawn(async move {
                    let blackholed = *silenced.borrow_and_update();
                    let server = match blackholed {
                        true => None,
                        false => tokio::net::TcpStream::connect(&upstream).await.ok(),
                    };
                    if let Some(mut server) = server {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                            _ = silenced.wait_for(|s| *s) => {}
                        }
                    }
                    // Blackholed: both ends stay open, and nothing goes through.
                    let _held = client;
                    std::future::pending::<()>().await
                });
            }
        });
        *self.tasks.lock().unwrap() = Some(set);
    }

    /// A blackholed network: the port still accepts, but from now on no
    /// byte goes through either way, on new or open connections, and none
    /// is closed (as when a firewall drops packets or a host vanishes).
    pub fn blackhole(&self) {
        self.silent.send_replace(true);
    }

    /// The outage: the port is closed (connections refused) and every open
    /// connection is dropped.
    pub fn cut(&self) {
        if let Some(mut set) = self.tasks.lock().unwrap().take() {
            set.abort_all();
        }
    }
}

/// A real PgBouncer in front of the test's PostgreSQL schema, in `mode`
/// (`session` or `transaction`). Needs the `pgbouncer` binary (Debian:
/// `apt-get install pgbouncer`; `.ci/run` installs it).
pub struct PgBouncer {
    /// The URL Sesame is given: PgBouncer's port, no `options`.
    pub url: String,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl PgBouncer {
    /// `base` is the PostgreSQL URL (`postgres://user@host:port/db`);
    /// every server connection starts with `search_path` set to `schema`.
    pub async fn start(base: &str, schema: &str, mode: &str) -> PgBouncer {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("the PostgreSQL tests need PgBouncer: apt-get install pgbouncer");
        let rest = base.split("://").nth(1).unwrap();
        let (user, rest) = rest.split_once('@').unwrap();
        let (hostport, db) = rest.split_once('/').unwrap();
        let db = db.split('?').next().unwrap();
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = probe.local_addr().unwrap().port();
        drop(probe);
        let dir = std::env::temp_dir().join(format!("sesame-pgbouncer-{listen}"));
        std::fs::create_dir_all(&dir).unwrap();
        // No reset between clients: the schema set at connect stays (the
        // default `DISCARD ALL` would drop it in session mode).
        let ini = format!(
            "[databases]\n{db} = host={host} port={port} dbname={db} user={user} \
             connect_query='SET search_path TO {schema}'\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\npool_mode = {mode}\n\
             server_reset_query =\nmax_client_conn = 200\ndefault_pool_size = {size}\n\
             logfile = {dir}/pgbouncer.log\n",
            dir = dir.display(),
            // Session mode gives each client connection a server connection
            // of its own; transaction mode shares a few.
            size = if mode == "session" { 20 } else { 3 },
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        std::fs::write(dir.join("users.txt"), format!("\"{user}\" \"\"\n")).unwrap();
        let mut cmd = std::process::Command::new(binary);
        // PgBouncer will not run as root; it drops to `postgres` when asked.
        let root = std::process::Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
        if root {
            std::process::Command::new("chown")
                .args(["-R", "postgres", dir.to_str().unwrap()])
                .status()
                .unwrap();
            cmd.args(["-u", "postgres"]);
        }
        let mut child = cmd
            .arg(dir.join("pgbouncer.ini"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pgbouncer starts");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", listen)).await.is_ok() {
                return PgBouncer {
                    url: format!("postgres://{user}@127.0.0.1:{listen}/{db}?sslmode=disable"),
                    child,
                    dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "pgbouncer did not start: {}",
            std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
        );
    }

    /// PgBouncer's log (what it refused, and why).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
