//! Self-hosted Logto as companies deploy it (issue 33), for `tests/self_hosted/`: the real
//! Logto (`real_logto::start_behind`) behind nginx at `https://<name>:<port>` with a
//! certificate from a CA made for the run with `openssl`, reached through tinyproxy with
//! a user and password. Everything listens on 127.0.0.1 on free ports.
//!
//! - `<name>` is `logto-<pid>.m2m.test` (`.test` never resolves in DNS), not a loopback
//!   name, so that the library sends its requests through the proxy; a line
//!   `127.0.0.1 <name>` in `/etc/hosts` lets tinyproxy, nginx's clients and the command
//!   resolve it with getaddrinfo (the tests run as root, here and in CI).
//! - nginx (`/usr/sbin/nginx`, Debian's `nginx-light`) runs as one process in the
//!   foreground (`daemon off`, `master_process off`) with its prefix, config, pid file,
//!   logs and temp folders in the run's folder, and passes everything to Logto with
//!   `Host` and `X-Forwarded-Proto: https` (Logto then trusts them: `TRUST_PROXY_HEADER`).
//! - tinyproxy (`tinyproxy -d -c <conf>`) is started per test ([`Tinyproxy::start`]), so
//!   that its log, which shows every `CONNECT`, belongs to one test: `BasicAuth`,
//!   `ConnectPort` nginx's port and nothing else.
//!
//! Clean-up: the arrangement is a static, which is never dropped, so a watchdog (a small
//! `sh` reading its stdin, a pipe only this process holds, until EOF) does it when the test
//! binary ends in any way: kills nginx by its PID, takes the `/etc/hosts` line out and
//! removes the run's folder; Logto has its own. The watchdog ignores INT, HUP and TERM and
//! has a process group of its own. A line left by a run whose watchdog was killed too (its
//! pid no longer runs) is taken out at the next start. Each tinyproxy is killed by its PID
//! on `Drop`, and has a watchdog of its own for a test binary killed before that.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::real_logto::{self, Logto};

pub const NGINX: &str = "/usr/sbin/nginx";
pub const TINYPROXY: &str = "/usr/bin/tinyproxy";
const HOSTS: &str = "/etc/hosts";
/// The mark of our lines in `/etc/hosts`, followed by the pid of the test binary.
const HOSTS_MARK: &str = "# logto-m2m tests/self_hosted pid ";
/// The proxy's user and password. The password is a canary: no output may show it.
pub const PROXY_USER: &str = "proxy-user";
pub const PROXY_PASSWORD: &str = "pr0xy-pw-canary";
/// nginx and tinyproxy answer within milliseconds; far more, for a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Logto behind nginx at [`endpoint`](SelfHosted::endpoint), and what a client needs.
pub struct SelfHosted {
    /// `logto-<pid>.m2m.test`.
    pub name: String,
    /// nginx's port.
    pub port: u16,
    /// `https://<name>:<port>`: `LOGTO_ENDPOINT`, and Logto's issuer without `/oidc`.
    pub endpoint: String,
    /// The test CA's certificate (PEM): the `LOGTO_CA_FILE`.
    pub ca_file: PathBuf,
    /// Logto itself, also reachable directly at `logto.endpoint()` (http, 127.0.0.1).
    pub logto: Logto,
    nginx: Child,
    dir: PathBuf,
    _watchdog: ChildStdin,
}

/// The arrangement this test binary shares, started on first use.
///
/// # Panics
///
/// When it can't be started (every test then panics with the same reason).
pub fn self_hosted() -> &'static SelfHosted {
    static SHARED: OnceLock<Result<SelfHosted, String>> = OnceLock::new();
    match SHARED.get_or_init(start) {
        Ok(arrangement) => arrangement,
        Err(why) => panic!("{why}"),
    }
}

impl SelfHosted {
    /// The test CA's certificate.
    pub fn ca_pem(&self) -> Vec<u8> {
        fs::read(&self.ca_file).expect("the test CA")
    }

    /// `<name>:<port>`, what a CONNECT asks for.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.name, self.port)
    }

    /// nginx's access log: one line per request it served.
    pub fn served(&self) -> Vec<String> {
        let text = fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines().map(str::to_owned).collect()
    }

    /// Whether nginx still runs (it is never reaped before the binary ends).
    fn nginx_runs(&self) -> bool {
        alive(self.nginx.id())
    }
}

fn start() -> Result<SelfHosted, String> {
    for (tool, package) in [
        (NGINX, "nginx-light"),
        (TINYPROXY, "tinyproxy"),
        ("/usr/bin/openssl", "openssl"),
    ] {
        if !Path::new(tool).is_file() {
            return Err(format!(
                "self-hosted arrangement: {tool} not found (apt-get install {package})"
            ));
        }
    }
    let pid = std::process::id();
    let name = format!("logto-{pid}.m2m.test");
    let dir = std::env::temp_dir().join(format!("logto-m2m-self-hosted-{pid}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mark = format!("{HOSTS_MARK}{pid}");
    // First, so that whatever follows is undone however this process ends.
    let watchdog = watchdog(
        CLEAN_UP,
        &[dir.to_str().expect("a UTF-8 temp dir"), &mark, HOSTS],
    )?;
    hosts_line(&name, &mark)?;
    make_certificates(&dir, &name)?;
    // Held while Logto starts, so that nobody (Logto's own ports included) takes it.
    let held = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let port = held.local_addr().map_err(|e| e.to_string())?.port();
    let endpoint = format!("https://{name}:{port}");
    let logto = real_logto::start_behind(&endpoint)?;
    drop(held);
    let nginx = start_nginx(&dir, &name, port, logto.port())?;
    let arrangement = SelfHosted {
        name,
        port,
        endpoint,
        ca_file: dir.join("ca.pem"),
        logto,
        nginx,
        dir,
        _watchdog: watchdog,
    };
    wait_for_nginx(&arrangement)?;
    let _ = writeln!(
        std::io::stderr().lock(),
        "self_hosted: Logto behind nginx at {} (direct {}), /etc/hosts line `127.0.0.1 {}`",
        arrangement.endpoint,
        arrangement.logto.endpoint(),
        arrangement.name
    );
    Ok(arrangement)
}

/// The watchdog's clean-up (`$1` the run's folder, `$2` the hosts mark, `$3` the hosts
/// file): kill each `pid name` of `$1/pids` whose command line still names it (never a
/// process that took a PID over), take the marked line out of the hosts file, remove the
/// folder. The hosts file is written in place (a Docker /etc/hosts is a mount, which a
/// rename can't replace) and never truncated first: the lines kept are written over the
/// old text, then the file is cut to their length, so that no one resolving `localhost`
/// meanwhile finds it empty.
const CLEAN_UP: &str = r#"trap '' INT HUP TERM
cat >/dev/null
if [ -f "$1/pids" ]; then
  while read -r pid name; do
    grep -qF "$name" "/proc/$pid/cmdline" 2>/dev/null && kill -9 "$pid"
  done <"$1/pids"
fi
if grep -qF "$2" "$3"; then
  grep -vF "$2" "$3" >"$1/hosts"
  dd if="$1/hosts" of="$3" conv=notrunc status=none && truncate -s "$(wc -c <"$1/hosts")" "$3"
fi
rm -rf "$1""#;

/// A tinyproxy's watchdog: unless told `done` first (its `Drop` did it all), kills `$1` if
/// its command line still names `$2` (its config, `$3.conf`), and removes `$3.*`.
const KILL: &str = r#"trap '' INT HUP TERM
read -r done
[ "$done" = done ] && exit 0
grep -qF "$2" "/proc/$1/cmdline" 2>/dev/null && kill -9 "$1"
rm -f "$3.conf" "$3.log" "$3.out""#;

/// Starts `sh -c script sh args...` with its stdin a pipe that only this process holds:
/// the script runs on when it reads EOF, which comes when the pipe is dropped or this
/// process ends in any way.
fn watchdog(script: &str, args: &[&str]) -> Result<ChildStdin, String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run sh for a watchdog: {e}"))?;
    let pipe = child.stdin.take().expect("piped stdin");
    // Reaped by a thread of its own, so that it leaves no zombie when it ends early.
    thread::spawn(move || child.wait());
    Ok(pipe)
}

/// Adds `127.0.0.1 <name> <mark>` to `/etc/hosts`, after taking out the lines of runs whose
/// process is gone. Written in place and never truncated first: the new text goes over the
/// old from the start, then the file is cut to its length, so a reader meanwhile sees the
/// old lines or the new ones (with, for a moment, the old text's end after them), never
/// an empty file.
fn hosts_line(name: &str, mark: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| {
        format!("{HOSTS}: {e} (the self-hosted tests add a line for {name}: run them as root)")
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(HOSTS)
        .map_err(fail)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(fail)?;
    let stale = |line: &str| {
        line.split_once(HOSTS_MARK)
            .is_some_and(|(_, pid)| !Path::new(&format!("/proc/{}", pid.trim())).exists())
    };
    let mut kept: String = text
        .lines()
        .filter(|line| !stale(line))
        .map(|line| format!("{line}\n"))
        .collect();
    kept.push_str(&format!("127.0.0.1 {name} {mark}\n"));
    file.seek(SeekFrom::Start(0)).map_err(fail)?;
    file.write_all(kept.as_bytes()).map_err(fail)?;
    file.set_len(kept.len() as u64).map_err(fail)?;
    Ok(())
}

/// A CA for the run and a certificate for `name` it signed (X.509 v3 with the name in
/// its subjectAltName: rustls takes no other), P-256 keys: `ca.pem`, `server.pem`,
/// `server.key` in `dir`. The CA's key is removed once it has signed.
fn make_certificates(dir: &Path, name: &str) -> Result<(), String> {
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName=DNS:{name}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .map_err(|e| format!("server.ext: {e}"))?;
    let steps = [
        format!(
            "req -x509 {key} -keyout ca.key -out ca.pem -days 2 \
             -subj /CN=logto-m2m-self-hosted-test-ca-{} \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign",
            std::process::id()
        ),
        format!("req -new {key} -keyout server.key -out server.csr -subj /CN={name}"),
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
         -out server.pem -extfile server.ext"
            .to_owned(),
    ];
    for args in steps {
        let mut cmd = Command::new("openssl");
        cmd.args(args.split_whitespace()).current_dir(dir);
        let out = real_logto::run_bounded(cmd, None, Duration::from_secs(60));
        if out.code != Some(0) {
            return Err(format!("openssl {args}: {}", out.stderr));
        }
    }
    let _ = fs::remove_file(dir.join("ca.key"));
    Ok(())
}

/// nginx on 127.0.0.1:`port`, TLS for `name`, passing everything to Logto on `upstream`.
fn start_nginx(dir: &Path, name: &str, port: u16, upstream: u16) -> Result<Child, String> {
    let d = dir.display();
    let conf = format!(
        "daemon off;\n\
         master_process off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         \x20 access_log {d}/access.log;\n\
         \x20 client_body_temp_path {d}/client_body;\n\
         \x20 proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n\
         \x20 uwsgi_temp_path {d}/uwsgi;\n\
         \x20 scgi_temp_path {d}/scgi;\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{port} ssl;\n\
         \x20   server_name {name};\n\
         \x20   ssl_certificate {d}/server.pem;\n\
         \x20   ssl_certificate_key {d}/server.key;\n\
         \x20   location / {{\n\
         \x20     proxy_pass http://127.0.0.1:{upstream};\n\
         \x20     proxy_set_header Host $http_host;\n\
         \x20     proxy_set_header X-Forwarded-Proto https;\n\
         \x20     proxy_set_header X-Forwarded-For $remote_addr;\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n"
    );
    let conf_path = dir.join("nginx.conf");
    fs::write(&conf_path, conf).map_err(|e| format!("nginx.conf: {e}"))?;
    let out = File::create(dir.join("nginx.out")).map_err(|e| format!("nginx.out: {e}"))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {NGINX}: {e}"))?;
    // For the watchdog, which kills it when the test binary ends.
    fs::write(dir.join("pids"), format!("{} nginx\n", child.id()))
        .map_err(|e| format!("pids: {e}"))?;
    Ok(child)
}

/// Waits until nginx answers Logto's discovery document by the name, with the issuer
/// Logto was given.
fn wait_for_nginx(arrangement: &SelfHosted) -> Result<(), String> {
    let agent = tls_agent(&arrangement.ca_pem(), Duration::from_secs(5));
    let url = format!(
        "{}/oidc/.well-known/openid-configuration",
        arrangement.endpoint
    );
    let expected = format!("\"issuer\":\"{}/oidc\"", arrangement.endpoint);
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < READY_TIMEOUT {
        if !arrangement.nginx_runs() {
            break;
        }
        match agent.get(&url).call() {
            Ok(mut answer) => {
                let body = answer.body_mut().read_to_string().unwrap_or_default();
                if answer.status() == 200 && body.contains(&expected) {
                    return Ok(());
                }
                last = format!(
                    "http {}: {}",
                    answer.status(),
                    body.chars().take(300).collect::<String>()
                );
            }
            Err(e) => last = e.to_string(),
        }
        thread::sleep(POLL);
    }
    let log = |name: &str| fs::read_to_string(arrangement.dir.join(name)).unwrap_or_default();
    Err(format!(
        "nginx at {url} (for Logto on {}): not ready within {READY_TIMEOUT:?} (running: {}); \
         last: {last}\nnginx.out: {}\nerror.log: {}",
        arrangement.logto.endpoint(),
        arrangement.nginx_runs(),
        log("nginx.out"),
        log("error.log")
    ))
}

/// True while `pid` runs: not gone, not a zombie (a child of ours that ended, not reaped).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// A ureq agent that trusts `ca_pem` only, with no proxy: the tests' own client.
pub fn tls_agent(ca_pem: &[u8], timeout: Duration) -> ureq::Agent {
    use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(ca_pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    let provider = if cfg!(feature = "rustls") {
        TlsProvider::Rustls
    } else {
        TlsProvider::NativeTls
    };
    let tls = TlsConfig::builder()
        .provider(provider)
        .root_certs(RootCerts::Specific(std::sync::Arc::new(certs)))
        .build();
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(tls)
        .build()
        .new_agent()
}

/// A tinyproxy of its own for one test: on 127.0.0.1, `BasicAuth` [`PROXY_USER`]
/// [`PROXY_PASSWORD`], `CONNECT` allowed to `connect_port` only, its log in a file.
pub struct Tinyproxy {
    pub port: u16,
    child: Child,
    log: PathBuf,
    conf: PathBuf,
    watchdog: ChildStdin,
}

impl Tinyproxy {
    /// # Panics
    ///
    /// When it can't be started on any of five free ports.
    pub fn start(connect_port: u16) -> Tinyproxy {
        let mut last = String::new();
        for _ in 0..5 {
            match Tinyproxy::start_on(super::free_port(), connect_port) {
                Ok(proxy) => return proxy,
                Err(why) => last = why,
            }
        }
        panic!("tinyproxy: did not start on five free ports; last: {last}");
    }

    fn start_on(port: u16, connect_port: u16) -> Result<Tinyproxy, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let stem = std::env::temp_dir().join(format!(
            "logto-m2m-tinyproxy-{}-{}-{port}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let log = stem.with_extension("log");
        let conf = stem.with_extension("conf");
        fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 32\nAllow 127.0.0.1\n\
                 BasicAuth {PROXY_USER} {PROXY_PASSWORD}\nConnectPort {connect_port}\n\
                 DisableViaHeader Yes\nLogFile \"{}\"\nLogLevel Info\n",
                log.display()
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let out = File::create(stem.with_extension("out")).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new(TINYPROXY)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {TINYPROXY}: {e}"))?;
        let pid = child.id().to_string();
        let stem_text = stem.to_str().expect("a UTF-8 temp dir");
        let conf_text = conf.to_str().expect("a UTF-8 temp dir");
        let watchdog = match watchdog(KILL, &[&pid, conf_text, stem_text]) {
            Ok(w) => w,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let proxy = Tinyproxy {
            port,
            child,
            log,
            conf,
            watchdog,
        };
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            let listening = proxy.log_text().contains("Starting main loop");
            if !alive(proxy.child.id()) {
                return Err(format!("exited on port {port}: {}", proxy.log_text()));
            }
            if listening && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(proxy);
            }
            thread::sleep(POLL);
        }
        Err(format!(
            "not listening on {port} within {READY_TIMEOUT:?}: {}",
            proxy.log_text()
        ))
    }

    /// `http://proxy-user:<password>@127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.url_with(PROXY_USER, PROXY_PASSWORD)
    }

    /// The proxy's URL with other credentials.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// The proxy's URL without credentials.
    pub fn url_without_credentials(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `host:port` of each CONNECT it was asked for, in order (allowed or not).
    pub fn connects(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|line| line.split_once("): CONNECT ").map(|(_, rest)| rest))
            .map(|rest| rest.split(' ').next().unwrap_or("").to_owned())
            .collect()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        // Our own child, by its PID; the watchdog is told first, so that it never kills
        // the PID once reaped (someone else's, maybe, by then).
        let _ = self.watchdog.write_all(b"done\n");
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !thread::panicking() {
            let _ = fs::remove_file(&self.log);
            let _ = fs::remove_file(&self.conf);
            let _ = fs::remove_file(self.log.with_extension("out"));
        }
    }
}
