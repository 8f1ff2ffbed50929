//! The URL forms of `RedisCache::new`, read into what connects.
//!
//! One server (`redis://`, `rediss://`, `redis+unix://`, and the `valkey` spellings) is the
//! redis crate's own syntax, read by the redis crate. Sentinel and Cluster name several
//! hosts in one URL, which the redis crate has no syntax for, so they are read here:
//!
//! - `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<master-name>[/<db>]`
//!   (default port 26379);
//! - `redis+cluster://[[user]:password@]host[:port][,host[:port]...]` (default port 6379);
//! - `rediss+...` for TLS to every node.
//!
//! The user and password are the data nodes': the master (Sentinel) or every node
//! (Cluster). They are percent-decoded, as in any URL.

use ::redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

/// What a URL says.
pub(super) struct Parsed {
    pub(super) topology: Topology,
    /// TLS to every node.
    pub(super) tls: bool,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) db: i64,
    /// What `describe` says: the form and the hosts, never a user name or password.
    pub(super) description: String,
}

/// Which servers, and how they are found. (A form whose feature is off is refused before
/// it is made, so its fields go unread in such a build.)
#[cfg_attr(
    not(all(feature = "redis-sentinel", feature = "redis-cluster")),
    allow(dead_code)
)]
pub(super) enum Topology {
    /// One server, as the redis crate reads its URL (TCP, TLS or a Unix socket).
    Standalone(ConnectionInfo),
    /// Sentinels that name the master of `master`.
    Sentinel {
        sentinels: Vec<HostPort>,
        master: String,
    },
    /// Cluster nodes to ask for the slot map first.
    Cluster { seeds: Vec<HostPort> },
}

/// A TCP address as a URL or a Redis reply gives it: a name or an IP address, and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HostPort {
    pub(super) host: String,
    pub(super) port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl HostPort {
    /// `host:port` as Redis writes it in `MOVED`, `ASK` and `CLUSTER SLOTS` (an IPv6
    /// address without brackets, the port after its last colon).
    #[cfg_attr(
        not(any(feature = "redis-sentinel", feature = "redis-cluster")),
        allow(dead_code)
    )]
    pub(super) fn from_reply(text: &str) -> Option<HostPort> {
        let (host, port) = text.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(HostPort {
            host: host.to_owned(),
            port: port.parse().ok().filter(|p| *p > 0)?,
        })
    }
}

const SENTINEL_PORT: u16 = 26379;
const REDIS_PORT: u16 = 6379;

/// Reads `url`. Errors are reasons without the URL (it may hold a password), and the caller
/// redacts the password from them anyway.
pub(super) fn parse(url: &str) -> Result<Parsed, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("must start with redis://, rediss://, redis+unix://, redis+sentinel:// or redis+cluster://".into());
    };
    let scheme = scheme.to_ascii_lowercase();
    if (scheme.starts_with("rediss") || scheme.starts_with("valkeys")) && !cfg!(feature = "rustls")
    {
        // With only native-tls the redis crate does its TLS handshake before it sets any
        // timeout, so a server that never answers would hold the caller forever.
        return Err(format!(
            "{scheme}:// needs this crate's rustls feature (the native-tls handshake of the redis crate has no timeout)"
        ));
    }
    match scheme.as_str() {
        "redis+sentinel" | "rediss+sentinel" => {
            if !cfg!(feature = "redis-sentinel") {
                return Err(format!(
                    "{scheme}:// needs this crate's redis-sentinel feature"
                ));
            }
            multi_host(&scheme, rest, SENTINEL_PORT)
        }
        "redis+cluster" | "rediss+cluster" => {
            if !cfg!(feature = "redis-cluster") {
                return Err(format!(
                    "{scheme}:// needs this crate's redis-cluster feature"
                ));
            }
            multi_host(&scheme, rest, REDIS_PORT)
        }
        _ => standalone(url),
    }
}

fn standalone(url: &str) -> Result<Parsed, String> {
    let info = url
        .into_connection_info()
        .map_err(|e| super::lowercase_first(&e.to_string()))?;
    let settings = info.redis_settings();
    let db = settings.db();
    let (tls, description) = match info.addr() {
        ConnectionAddr::Tcp(host, port) => {
            (false, format!("redis://{}:{port}/{db}", bracket(host)))
        }
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } => {
            if *insecure {
                return Err("certificate checks can't be turned off (#insecure)".into());
            }
            (true, format!("rediss://{}:{port}/{db}", bracket(host)))
        }
        ConnectionAddr::Unix(path) => (false, format!("unix://{}?db={db}", path.display())),
        _ => (false, format!("(db {db})")),
    };
    Ok(Parsed {
        tls,
        username: settings.username().map(str::to_owned),
        password: settings.password().map(str::to_owned),
        db,
        description,
        topology: Topology::Standalone(info),
    })
}

/// A Sentinel or Cluster URL after its `scheme://`.
fn multi_host(scheme: &str, rest: &str, default_port: u16) -> Result<Parsed, String> {
    if rest.contains(['?', '#']) {
        return Err(format!(
            "{scheme}:// takes no query or fragment (certificate checks can't be turned off)"
        ));
    }
    // The user info ends at the last `@`: a password may hold `/` or `@` unencoded, a host
    // list and a master name never do.
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let hosts = hosts
        .split(',')
        .map(|h| host_port(h, default_port))
        .collect::<Result<Vec<_>, _>>()?;
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let decoded = |s: &str| {
                percent_decode(s)
                    .ok_or("the user or password is not valid percent-encoded utf-8".to_owned())
            };
            (
                Some(decoded(user)?).filter(|s| !s.is_empty()),
                Some(decoded(pass)?).filter(|s| !s.is_empty()),
            )
        }
    };
    let tls = scheme.starts_with("rediss");
    let list = hosts
        .iter()
        .map(HostPort::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let (topology, db, description) = if scheme.ends_with("sentinel") {
        let master = segments
            .next()
            .ok_or("a sentinel url names the master after the hosts: /<master-name>[/<db>]")?;
        let master = percent_decode(master).ok_or("the master name is not valid utf-8")?;
        let db = match segments.next() {
            None => 0,
            Some(db) => db
                .parse::<i64>()
                .ok()
                .filter(|d| *d >= 0)
                .ok_or("the database after the master name is not a number")?,
        };
        let description = format!("{scheme}://{list}/{master}/{db}");
        let topology = Topology::Sentinel {
            sentinels: hosts,
            master,
        };
        (topology, db, description)
    } else {
        // A cluster has only database 0.
        if segments.any(|s| s != "0") {
            return Err("a cluster has only database 0: nothing may follow the hosts".into());
        }
        let description = format!("{scheme}://{list}");
        (Topology::Cluster { seeds: hosts }, 0, description)
    };
    if segments.next().is_some() {
        return Err("nothing may follow the database number".into());
    }
    Ok(Parsed {
        topology,
        tls,
        username,
        password,
        db,
        description,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_port(text: &str, default_port: u16) -> Result<HostPort, String> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("an IPv6 address in the host list has no closing ]")?;
        (host, after.strip_prefix(':'))
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("a host in the host list is empty".into());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return Err("a host in the host list is not a host name or IP address".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or("a port in the host list is not a number from 1 to 65535")?,
    };
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

/// Hosts as a URL writes them: an IPv6 address in brackets.
fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// `%XX` decoded; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn standalone_forms() {
        let p = parse("redis://u:Pa55-canary@10.0.0.5:6380/2").unwrap();
        assert_eq!(p.description, "redis://10.0.0.5:6380/2");
        assert_eq!(p.username.as_deref(), Some("u"));
        assert_eq!(p.password.as_deref(), Some("Pa55-canary"));
        assert!(!p.tls);
        assert_eq!(
            parse("redis://[::1]").unwrap().description,
            "redis://[::1]:6379/0"
        );
        if cfg!(feature = "rustls") {
            assert!(parse("rediss://cache.example:6380").unwrap().tls);
        }
        assert!(parse("rediss://cache.example:6380/#insecure").is_err());
    }

    #[cfg(feature = "redis-sentinel")]
    #[test]
    fn sentinel_forms() {
        let p =
            parse("redis+sentinel://:p%40ss%2Fw0rd@s1:26380,[::1],10.0.0.7/mymaster/3").unwrap();
        let Topology::Sentinel { sentinels, master } = &p.topology else {
            panic!("not a sentinel url");
        };
        assert_eq!(master, "mymaster");
        assert_eq!(
            sentinels
                .iter()
                .map(HostPort::to_string)
                .collect::<Vec<_>>(),
            ["s1:26380", "[::1]:26379", "10.0.0.7:26379"]
        );
        assert_eq!((p.db, p.tls), (3, false));
        assert_eq!(p.password.as_deref(), Some("p@ss/w0rd"));
        assert_eq!(p.username, None);
        assert_eq!(
            p.description,
            "redis+sentinel://s1:26380,[::1]:26379,10.0.0.7:26379/mymaster/3"
        );
        let user = parse("redis+sentinel://tokens:x@s1/m").unwrap();
        assert_eq!(user.db, 0);
        assert_eq!(user.username.as_deref(), Some("tokens"));
        match parse("rediss+sentinel://tokens:x@s1/m") {
            Ok(tls) => assert!(tls.tls && cfg!(feature = "rustls")),
            Err(e) => assert!(
                e.contains("rustls feature") && !cfg!(feature = "rustls"),
                "{e}"
            ),
        }
        for bad in [
            "redis+sentinel://s1",
            "redis+sentinel://s1/m/x",
            "redis+sentinel://s1/m/1/2",
            "redis+sentinel://s1:0/m",
            "redis+sentinel://s1:99999/m",
            "redis+sentinel://,s2/m",
            "redis+sentinel://s1/m#insecure",
            "redis+sentinel://s1/m?x=1",
            "redis+sentinel://[::1/m",
            "redis+sentinel://:%zz@s1/m",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[cfg(feature = "redis-cluster")]
    #[test]
    fn cluster_forms() {
        let url = "REDIS+CLUSTER://u:pw@n1:7000,n2,10.1.2.3:7002";
        let p = parse(url).unwrap();
        let Topology::Cluster { seeds } = &p.topology else {
            panic!("not a cluster url");
        };
        assert_eq!(seeds.len(), 3);
        assert_eq!(
            seeds[1],
            HostPort {
                host: "n2".into(),
                port: 6379
            }
        );
        assert!(!p.tls);
        assert_eq!(
            p.description,
            "redis+cluster://n1:7000,n2:6379,10.1.2.3:7002"
        );
        if cfg!(feature = "rustls") {
            assert!(parse(&url.replace("REDIS+", "rediss+")).unwrap().tls);
        }
        assert!(parse("redis+cluster://n1/0").is_ok());
        assert!(parse("redis+cluster://n1/1").is_err());
        assert!(parse("redis+cluster://n1 x").is_err());
    }

    #[test]
    fn features_are_named_when_off() {
        if !cfg!(feature = "redis-sentinel") {
            let err = parse("redis+sentinel://s1/m").err().unwrap();
            assert!(err.contains("redis-sentinel feature"), "{err}");
        }
        if !cfg!(feature = "redis-cluster") {
            let err = parse("redis+cluster://n1").err().unwrap();
            assert!(err.contains("redis-cluster feature"), "{err}");
        }
    }

    #[test]
    fn replies_give_host_and_port() {
        assert_eq!(
            HostPort::from_reply("127.0.0.1:7001"),
            Some(HostPort {
                host: "127.0.0.1".into(),
                port: 7001
            })
        );
        assert_eq!(HostPort::from_reply("::1:7001").unwrap().host, "::1");
        assert_eq!(HostPort::from_reply("x"), None);
        assert_eq!(HostPort::from_reply("h:0"), None);
    }
}
