//! Machine-to-machine end to end: a small blocking API that protects `/products` with a
//! `Verifier`, and an M2M app that calls it through `Bearer`.
//!
//! ```sh
//! export LOGTO_ENDPOINT=https://tenant-id.logto.app LOGTO_APP_ID=... LOGTO_APP_SECRET=...
//! export API_RESOURCE=https://shopping.api   # the API resource's indicator in Logto
//! cargo run -q --example products_api
//! ```
//!
//! The API (std's `TcpListener`, one thread per connection, on a free loopback port)
//! answers `GET /products` to tokens with `read:products` and `POST /products` to tokens
//! with `write:products`: 401 with `WWW-Authenticate` for a missing or refused token, 403
//! for a missing scope. The app asks for `read:products` only (`APP_SCOPES` to change
//! that) and prints each call's status and what came back, one line each; exit status 1
//! when a step fails outright.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use logto_m2m::{Bearer, Config, TokenRequest, TokenStore, Verifier};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("products_api: {message}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<(), String> {
    let endpoint = std::env::var("LOGTO_ENDPOINT").map_err(|_| "set LOGTO_ENDPOINT")?;
    let resource =
        std::env::var("API_RESOURCE").unwrap_or_else(|_| "https://shopping.api".to_owned());
    let scopes = std::env::var("APP_SCOPES").unwrap_or_else(|_| "read:products".to_owned());

    // The API's side: one Verifier for every request, shared by the threads.
    let verifier = Arc::new(Verifier::logto(&endpoint).map_err(|e| e.to_string())?);
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let origin = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let api = Api {
        verifier,
        resource: resource.clone(),
    };
    thread::spawn(move || api.serve(listener));

    // The app's side: tokens from a TokenStore, sent by the Bearer middleware.
    let config = Config::from_env().map_err(|e| e.to_string())?;
    let store = Arc::new(TokenStore::new(config));
    let bearer = Bearer::new(store, TokenRequest::new(&resource).scope(&scopes), &origin)
        .map_err(|e| e.to_string())?;
    let app: ureq::Agent = ureq::Agent::config_builder()
        .middleware(bearer)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let url = format!("{origin}/products");
    print(app.get(&url).call())?;
    print(app.post(&url).send("melon"))?;
    // A caller without a token, for the 401.
    print(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
            .get(&url)
            .call(),
    )
}

/// One line per answer: the status, then the body or the `WWW-Authenticate` challenge.
fn print(answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<(), String> {
    let mut answer = answer.map_err(|e| e.to_string())?;
    let status = answer.status().as_u16();
    let challenge = answer
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = answer
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    println!("{status} {}", challenge.unwrap_or(body));
    Ok(())
}

/// The API: what it needs to check a request.
#[derive(Clone)]
struct Api {
    verifier: Arc<Verifier>,
    resource: String,
}

impl Api {
    fn serve(self, listener: TcpListener) {
        for stream in listener.incoming().flatten() {
            let api = self.clone();
            thread::spawn(move || api.answer(stream));
        }
    }

    /// Reads one request head and answers it; the connection closes after.
    fn answer(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let (method, path) = {
            let mut words = line.split(' ');
            (
                words.next().unwrap_or("").to_owned(),
                words.next().unwrap_or("").to_owned(),
            )
        };
        let mut token = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                break;
            }
            match header.split_once(':') {
                Some((name, value)) if name.eq_ignore_ascii_case("authorization") => {
                    token = value.trim().strip_prefix("Bearer ").map(str::to_owned);
                }
                _ => {}
            }
        }
        let (status, challenge, body) = self.handle(&method, &path, token.as_deref());
        let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
        if let Some(c) = challenge {
            head.push_str(&format!("WWW-Authenticate: {c}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body.as_bytes());
    }

    /// The status line's code and text, the challenge, the body.
    fn handle(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (&str, Option<String>, String) {
        let scope = match (method, path) {
            ("GET", "/products") => "read:products",
            ("POST", "/products") => "write:products",
            _ => return ("404 Not Found", None, String::new()),
        };
        // No token at all: a bare challenge (RFC 6750 §3.1).
        let Some(token) = token else {
            return ("401 Unauthorized", Some("Bearer".into()), String::new());
        };
        match self.verifier.verify(token, &self.resource, &[scope]) {
            Ok(claims) if method == "GET" => {
                let who = claims.client_id.unwrap_or_default();
                ("200 OK", None, format!("[\"apple\",\"pear\"] for {who}"))
            }
            Ok(_) => ("201 Created", None, "added".into()),
            Err(e) => match e.challenge() {
                Some(c) if c.contains("insufficient_scope") => {
                    ("403 Forbidden", Some(c), String::new())
                }
                Some(c) => ("401 Unauthorized", Some(c), String::new()),
                // The keys could not be fetched: not the caller's fault.
                None => ("503 Service Unavailable", None, e.to_string()),
            },
        }
    }
}
