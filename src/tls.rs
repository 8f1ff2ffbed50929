//! Root certificates: which CAs verify the token endpoint's certificate.
//!
//! [`Config`](crate::Config) keeps the choice as [`Roots`]; the agent is built from it
//! lazily. Certificates are kept as DER bytes, read from PEM by ureq's own parser
//! (`ureq::tls::parse_pem`, which is rustls-pki-types'), whichever TLS feature is on; the
//! TLS library checks the DER when it builds its trust store. A build without a TLS
//! feature speaks plain http only, has no PEM parser, and refuses roots.

use std::fmt;
use std::sync::Arc;

/// Which certificates verify the server.
#[derive(Clone)]
pub(crate) enum Roots {
    /// The TLS feature's own default: Mozilla's roots built into the binary (rustls), or
    /// the system's (native-tls).
    Default,
    /// Exactly these CA certificates, DER-encoded, from
    /// [`Config::root_certificates_pem`](crate::Config::root_certificates_pem).
    Specific(Arc<Vec<Vec<u8>>>),
    /// The system's bundle file, read when the roots were chosen (rustls, or no TLS).
    #[cfg(any(feature = "rustls", not(feature = "native-tls")))]
    SystemBundle(Arc<Vec<Vec<u8>>>),
    /// native-tls's own verifier with the system's roots.
    #[cfg(all(feature = "native-tls", not(feature = "rustls")))]
    Platform,
}

impl fmt::Debug for Roots {
    /// Counts only: a bundle of 150 certificates would drown the rest of `Config`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::Default => f.write_str("default"),
            Roots::Specific(certs) => write!(f, "{}", certs.len()),
            #[cfg(any(feature = "rustls", not(feature = "native-tls")))]
            Roots::SystemBundle(certs) => write!(f, "platform({})", certs.len()),
            #[cfg(all(feature = "native-tls", not(feature = "rustls")))]
            Roots::Platform => f.write_str("platform"),
        }
    }
}

/// The largest PEM file read as a system bundle (16 MiB). Debian's has about 150
/// certificates in 220 KB; the cap only stops a misconfigured `SSL_CERT_FILE` (a device,
/// a huge log) from being read whole.
#[cfg(any(feature = "rustls", not(feature = "native-tls")))]
const MAX_BUNDLE_BYTES: u64 = 16 * 1024 * 1024;

/// Where Unix systems keep their CA bundle, first match wins. The same list, in spirit,
/// as Go's `crypto/x509` and OpenSSL's probing.
///
/// Probed here because neither ureq nor rustls does it in the default build: ureq's
/// `RootCerts::PlatformVerifier` needs its `platform-verifier` feature (the
/// rustls-platform-verifier crate and its platform crates), and `rustls-native-certs`, which
/// probes the same paths, is not in the tree either (the redis crate brings it, only with
/// `redis`). With native-tls, OpenSSL finds the system's roots itself and this is unused.
#[cfg(any(feature = "rustls", not(feature = "native-tls")))]
const SYSTEM_BUNDLES: &[&str] = &[
    // Debian, Ubuntu, Alpine, Arch, Gentoo
    "/etc/ssl/certs/ca-certificates.crt",
    // Fedora, RHEL, CentOS
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    // openSUSE, SLES
    "/etc/ssl/ca-bundle.pem",
    // macOS (the system roots only: certificates added to a keychain are not in it),
    // Alpine, OpenBSD
    "/etc/ssl/cert.pem",
    // FreeBSD
    "/usr/local/share/certs/ca-root-nss.crt",
];

/// Reads the system's CA bundle: the file named by `SSL_CERT_FILE` when it is set and not
/// empty (and then only that file), else the first of [`SYSTEM_BUNDLES`] that exists.
/// (With native-tls alone, OpenSSL finds the system's roots itself.)
#[cfg(any(feature = "rustls", not(feature = "native-tls")))]
pub(crate) fn system_bundle() -> Result<Vec<Vec<u8>>, String> {
    use std::io::Read;

    let from_env = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
    let (path, what) = match &from_env {
        Some(path) => (std::path::PathBuf::from(path), "SSL_CERT_FILE"),
        None => {
            let found = SYSTEM_BUNDLES
                .iter()
                .map(std::path::Path::new)
                .find(|p| p.is_file())
                .ok_or(
                    "platform roots: no system CA bundle found (looked for \
                     /etc/ssl/certs/ca-certificates.crt and the other usual paths); set \
                     SSL_CERT_FILE to a PEM bundle",
                )?;
            (found.to_path_buf(), "the system CA bundle")
        }
    };
    let shown = path.display();
    let mut pem = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_BUNDLE_BYTES + 1).read_to_end(&mut pem))
        .map_err(|e| format!("platform roots: cannot read {what} {shown}: {e}"))?;
    if pem.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(format!(
            "platform roots: {what} {shown} is larger than {MAX_BUNDLE_BYTES} bytes"
        ));
    }
    parse_pem_certificates(&pem)
        .map_err(|reason| format!("platform roots: {what} {shown}: {reason}"))
}

/// The DER bytes of every `CERTIFICATE` block in a PEM text (RFC 7468).
///
/// Text outside the blocks (comments, `openssl x509 -text` output) and blocks with other
/// labels are skipped. A block without its END line or whose contents are not base64 is an
/// error saying after which certificate it comes; so is a text without any certificate,
/// saying whether it held private keys. The reason never quotes the input. Whether the DER
/// is an X.509 certificate is the TLS library's to check (a block that is not one verifies
/// nothing).
pub(crate) fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let read = read_pem(pem)?;
    if read.certificates.is_empty() {
        const EXPECTED: &str = "(expected -----BEGIN CERTIFICATE-----)";
        return Err(match read.keys {
            0 => format!("no pem certificate found {EXPECTED}"),
            1 => format!("no pem certificate found, only a private key {EXPECTED}"),
            n => format!("no pem certificate found, only {n} private keys {EXPECTED}"),
        });
    }
    Ok(read.certificates)
}

/// What a PEM text holds, as [`read_pem`] reads it.
pub(crate) struct Pem {
    /// The DER of each certificate, in order.
    pub(crate) certificates: Vec<Vec<u8>>,
    /// How many private keys (PKCS#8, PKCS#1 or SEC1).
    pub(crate) keys: usize,
}

/// The certificates and private keys of a PEM text, by ureq's parser; an error for text
/// it can't read, saying where (never what).
#[cfg(any(feature = "rustls", feature = "native-tls"))]
pub(crate) fn read_pem(pem: &[u8]) -> Result<Pem, String> {
    use ureq::tls::PemItem;
    let mut read = Pem {
        certificates: Vec::new(),
        keys: 0,
    };
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(certificate)) => {
                read.certificates.push(certificate.der().to_vec());
            }
            // A private key, the only other kind ureq names.
            Ok(_) => read.keys += 1,
            // ureq's error quotes the input (the line it stopped at): not repeated.
            Err(_) => {
                let n = read.certificates.len();
                let after = match n {
                    0 => "before any certificate".to_owned(),
                    n => format!("after certificate {n}"),
                };
                return Err(format!(
                    "not valid pem (a block without its END line, or not base64) {after}"
                ));
            }
        }
    }
    Ok(read)
}

/// Without a TLS feature there is nothing a certificate could verify, and no parser.
#[cfg(not(any(feature = "rustls", feature = "native-tls")))]
pub(crate) fn read_pem(_: &[u8]) -> Result<Pem, String> {
    Err(
        "pem certificates need a tls feature (rustls or native-tls), which this build lacks"
            .to_owned(),
    )
}

/// ureq's TLS settings for these roots, with the provider the features choose: rustls
/// when its feature is on, else native-tls. ureq panics for rustls with
/// `RootCerts::PlatformVerifier` (without its platform-verifier feature) and for
/// native-tls with `RootCerts::WebPki` (without native-tls-webpki-roots), so neither
/// combination is ever built here.
#[cfg(any(feature = "rustls", feature = "native-tls"))]
pub(crate) fn tls_config(roots: &Roots) -> ureq::tls::TlsConfig {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let specific = |ders: &[Vec<u8>]| {
        RootCerts::Specific(Arc::new(
            ders.iter()
                .map(|der| Certificate::from_der(der).to_owned())
                .collect(),
        ))
    };
    #[cfg(feature = "rustls")]
    let (provider, root_certs) = (
        TlsProvider::Rustls,
        match roots {
            Roots::Default => RootCerts::WebPki,
            Roots::Specific(certs) | Roots::SystemBundle(certs) => specific(certs),
        },
    );
    #[cfg(not(feature = "rustls"))]
    let (provider, root_certs) = (
        TlsProvider::NativeTls,
        match roots {
            Roots::Default | Roots::Platform => RootCerts::PlatformVerifier,
            Roots::Specific(certs) => specific(certs),
        },
    );
    // Verification stays on: `disable_verification` is never set.
    TlsConfig::builder()
        .provider(provider)
        .root_certs(root_certs)
        .build()
}

#[cfg(test)]
mod test {
    use super::*;

    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";

    #[test]
    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    fn pem_with_text_around_and_other_blocks() {
        let pem = format!(
            "# a comment\nsubject=CN = x\n{CERT}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\r\n{CERT}"
        );
        let certs = parse_pem_certificates(pem.as_bytes()).unwrap();
        assert_eq!(certs, vec![vec![0x30, 3, 2, 1, 1]; 2]);
        assert_eq!(read_pem(pem.as_bytes()).unwrap().keys, 1);
    }

    #[test]
    #[cfg(any(feature = "rustls", feature = "native-tls"))]
    fn pem_errors_say_where() {
        let err = |pem: &str| parse_pem_certificates(pem.as_bytes()).unwrap_err();
        assert_eq!(
            err(""),
            "no pem certificate found (expected -----BEGIN CERTIFICATE-----)"
        );
        assert_eq!(
            err("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            "no pem certificate found, only a private key (expected -----BEGIN CERTIFICATE-----)"
        );
        assert_eq!(
            err(&format!("{CERT}-----BEGIN CERTIFICATE-----\nMAMCAQE=\n")),
            "not valid pem (a block without its END line, or not base64) after certificate 1"
        );
        for bad in [
            "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END X-----\n",
            "-----BEGIN CERTIFICATE-----\nMAMC*QE=\n-----END CERTIFICATE-----\n",
        ] {
            assert_eq!(
                err(bad),
                "not valid pem (a block without its END line, or not base64) before any \
                 certificate",
                "{bad}"
            );
        }
    }

    #[test]
    #[cfg(not(any(feature = "rustls", feature = "native-tls")))]
    fn no_pem_without_tls() {
        assert!(
            parse_pem_certificates(b"")
                .unwrap_err()
                .contains("tls feature")
        );
    }

    #[test]
    fn roots_debug_shows_counts_only() {
        let one = Roots::Specific(Arc::new(vec![vec![0x30, 0]]));
        assert_eq!(format!("{one:?}"), "1");
        assert_eq!(format!("{:?}", Roots::Default), "default");
    }
}
