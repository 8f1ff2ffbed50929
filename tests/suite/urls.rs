//! Issue 32: every URL the library is given is read by one set of rules, whoever reads
//! it: a `Config`'s token URL, a `Bearer`'s API origin, a `Verifier`'s JWKS URL,
//! `TokenRequest::management_api`'s endpoint, and `Origin`, which the command uses. Scheme
//! and host in any case (RFC 3986), IPv6 literals, ports (one past 65535 refused), user
//! info refused, loopback without a resolver, and plain http only to loopback.
//!
//! Before, five readers had five rules: `HTTPS://` was refused by the config and the
//! verifier but not by `Bearer`, a Logto Cloud endpoint in capitals lost its tenant, and a
//! port past 65535 was dropped silently, the scheme's port used instead.

use std::sync::Arc;

use logto_m2m::{Bearer, Config, ErrorKind, Origin, TokenRequest, TokenStore, Verifier};

/// What each reader makes of an origin: taken, or refused at once.
#[derive(Debug, PartialEq)]
enum Read {
    /// Taken by every reader; plain http to it is refused unless the host is loopback.
    Taken { loopback: bool, shown: &'static str },
    /// Refused by every reader, with this in the message.
    Refused(&'static str),
}

#[test]
fn every_reader_reads_urls_alike() {
    use Read::{Refused, Taken};
    let table = [
        (
            "https://api.example.com",
            Taken {
                loopback: false,
                shown: "https://api.example.com",
            },
        ),
        (
            "HTTPS://API.Example.COM",
            Taken {
                loopback: false,
                shown: "https://api.example.com",
            },
        ),
        (
            "Https://api.example.com:443",
            Taken {
                loopback: false,
                shown: "https://api.example.com",
            },
        ),
        (
            "https://api.example.com:8443",
            Taken {
                loopback: false,
                shown: "https://api.example.com:8443",
            },
        ),
        (
            "HTTP://LOCALHOST:3001",
            Taken {
                loopback: true,
                shown: "http://localhost:3001",
            },
        ),
        (
            "http://127.0.0.1:3001",
            Taken {
                loopback: true,
                shown: "http://127.0.0.1:3001",
            },
        ),
        (
            "http://[::1]:3001",
            Taken {
                loopback: true,
                shown: "http://[::1]:3001",
            },
        ),
        (
            "https://[2001:DB8::1]",
            Taken {
                loopback: false,
                shown: "https://[2001:db8::1]",
            },
        ),
        (
            "http://api.example.com",
            Taken {
                loopback: false,
                shown: "http://api.example.com",
            },
        ),
        // Loopback only as a literal or `localhost` itself: nothing is resolved.
        (
            "http://localhost.",
            Taken {
                loopback: false,
                shown: "http://localhost.",
            },
        ),
        (
            "http://127.1",
            Taken {
                loopback: false,
                shown: "http://127.1",
            },
        ),
        (
            "ftp://api.example.com",
            Refused("must start with https:// or http://"),
        ),
        (
            "api.example.com",
            Refused("must start with https:// or http://"),
        ),
        (
            "https://user:pw@api.example.com",
            Refused("must not contain user info"),
        ),
        (
            "https://@api.example.com",
            Refused("must not contain user info"),
        ),
        (
            "https://api.example.com:99999",
            Refused("has a port that is not a number up to 65535"),
        ),
        ("https://", Refused("is not a valid url")),
    ];
    let store = Arc::new(TokenStore::new(
        Config::new("https://auth.example/oidc/token", "app", "secret").unwrap(),
    ));
    for (text, expected) in table {
        let origin = Origin::of(text);
        let config = Config::new(&format!("{text}/oidc/token"), "app", "secret");
        let bearer = Bearer::new(Arc::clone(&store), TokenRequest::new("r"), text);
        let verifier = Verifier::new("https://issuer", &format!("{text}/oidc/jwks"));
        match expected {
            Taken { loopback, shown } => {
                let origin = origin.unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(origin.to_string(), shown, "{text}");
                assert_eq!(origin.is_loopback(), loopback, "{text}");
                let config = config.unwrap_or_else(|e| panic!("{text}: {e}"));
                // Plain http to a host that is not loopback: refused by each, before
                // anything is sent (a config says so when used).
                let cleartext = origin.scheme() == "http" && !loopback;
                if cleartext {
                    let used = logto_m2m::request_token(&config, &TokenRequest::new("r"));
                    for e in [
                        used.unwrap_err(),
                        bearer.unwrap_err(),
                        verifier.unwrap_err(),
                    ] {
                        assert!(matches!(e.kind(), ErrorKind::Config { .. }), "{text}: {e}");
                        assert!(e.to_string().contains("plain http"), "{text}: {e}");
                    }
                } else {
                    bearer.unwrap_or_else(|e| panic!("{text}: {e}"));
                    verifier.unwrap_or_else(|e| panic!("{text}: {e}"));
                }
            }
            Refused(why) => {
                let errors = [
                    origin.map(|_| ()).unwrap_err(),
                    config.map(|_| ()).unwrap_err(),
                    bearer.map(|_| ()).unwrap_err(),
                    verifier.map(|_| ()).unwrap_err(),
                ];
                for e in errors {
                    assert!(matches!(e.kind(), ErrorKind::Config { .. }), "{text}: {e}");
                    assert!(e.to_string().contains(why), "{text}: {e}");
                    assert!(!e.to_string().contains("pw@"), "{text}: {e}");
                }
            }
        }
    }
}

/// A Logto Cloud endpoint names its tenant in any case; anything else is self-hosted.
#[test]
fn the_management_api_of_an_endpoint_in_any_case() {
    let resource = |endpoint: &str| TokenRequest::management_api(endpoint).resource().to_owned();
    assert_eq!(
        resource("https://abc123.logto.app"),
        "https://abc123.logto.app/api"
    );
    assert_eq!(
        resource("HTTPS://ABC123.Logto.App/"),
        "https://abc123.logto.app/api"
    );
    assert_eq!(
        resource("https://abc123.logto.app:443"),
        "https://abc123.logto.app/api"
    );
    for self_hosted in [
        "https://auth.example.com",
        "https://a.b.logto.app",
        "https://abc123.logto.app.evil.example",
        "not a url",
    ] {
        assert_eq!(
            resource(self_hosted),
            "https://default.logto.app/api",
            "{self_hosted}"
        );
    }
}

/// The origin a `Bearer` sends its token to, and the origin of each request it sees, are
/// read alike: a request to the API in other capitals, or with the scheme's port written
/// out, is at the origin.
#[test]
fn a_bearers_origin_matches_in_any_case() {
    let origins = [
        "https://API.example.com/products?x=1",
        "HTTPS://api.EXAMPLE.com:443/",
    ];
    let bearer_origin = Origin::of("https://api.example.com").unwrap();
    for url in origins {
        assert_eq!(Origin::of(url).unwrap(), bearer_origin, "{url}");
    }
    let (origin, rest) = Origin::split("HTTPS://api.example.com:443/v1/users?page=2#x").unwrap();
    assert_eq!(
        (origin.to_string().as_str(), rest),
        ("https://api.example.com", "/v1/users?page=2#x")
    );
}
