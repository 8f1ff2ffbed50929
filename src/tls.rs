//! Root certificates: which CAs verify the token endpoint's certificate.
//!
//! [`Config`](crate::Config) keeps the choice as [`Roots`]; the agent is built from it
//! lazily. Certificates are kept as DER bytes, parsed from PEM here rather than by ureq,
//! so that the same checks and the same error messages apply whichever TLS feature is on
//! (and when none is).

use std::fmt;
use std::sync::Arc;

use base64::Engine;

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
pub(crate) fn system_bundle() -> Result<Vec<Vec<u8>>, crate::Error> {
    use std::io::Read;

    use crate::Error;

    let from_env = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
    let (path, what) = match &from_env {
        Some(path) => (std::path::PathBuf::from(path), "SSL_CERT_FILE"),
        None => {
            let found = SYSTEM_BUNDLES
                .iter()
                .map(std::path::Path::new)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    Error::config(
                        "platform roots: no system CA bundle found (looked for \
                         /etc/ssl/certs/ca-certificates.crt and the other usual paths); \
                         set SSL_CERT_FILE to a PEM bundle",
                    )
                })?;
            (found.to_path_buf(), "the system CA bundle")
        }
    };
    let shown = path.display();
    let mut pem = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_BUNDLE_BYTES + 1).read_to_end(&mut pem))
        .map_err(|e| Error::config(format!("platform roots: cannot read {what} {shown}: {e}")))?;
    if pem.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(Error::config(format!(
            "platform roots: {what} {shown} is larger than {MAX_BUNDLE_BYTES} bytes"
        )));
    }
    parse_pem_certificates(&pem)
        .map_err(|reason| Error::config(format!("platform roots: {what} {shown}: {reason}")))
}

/// The DER bytes of every `CERTIFICATE` block in a PEM text (RFC 7468).
///
/// Text outside the blocks (comments, `openssl x509 -text` output) and blocks with other
/// labels (`PRIVATE KEY`, `TRUSTED CERTIFICATE`, ...) are skipped. A block without its
/// END line, with an END line of another label, with invalid base64, or whose contents
/// are not one DER `SEQUENCE` is an error naming the block; so is a text without any
/// certificate. The reason never quotes the input.
pub(crate) fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut certs = Vec::new();
    let mut block = 0usize;
    // The label and base64 text of the block we are in, if any.
    let mut open: Option<(&[u8], Vec<u8>)> = None;
    for line in pem.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        match &mut open {
            None => {
                if let Some(label) = pem_boundary(line, b"-----BEGIN ") {
                    block += 1;
                    open = Some((label, Vec::new()));
                }
            }
            Some((label, text)) => {
                if let Some(end) = pem_boundary(line, b"-----END ") {
                    if end != *label {
                        return Err(format!(
                            "pem block {block} ends with a different label than it begins with"
                        ));
                    }
                    if *label == b"CERTIFICATE" {
                        certs.push(decode_certificate(text, block)?);
                    }
                    open = None;
                } else if line.starts_with(b"-----") {
                    return Err(format!("pem block {block} has no END line"));
                } else {
                    text.extend(line.iter().filter(|b| !b.is_ascii_whitespace()));
                }
            }
        }
    }
    if open.is_some() {
        return Err(format!("pem block {block} has no END line"));
    }
    if certs.is_empty() {
        return Err(if block == 0 {
            "no pem certificate found (expected -----BEGIN CERTIFICATE-----)".into()
        } else {
            format!("none of the {block} pem blocks is a CERTIFICATE")
        });
    }
    Ok(certs)
}

/// `-----BEGIN LABEL-----` → `LABEL` (for `prefix` `-----BEGIN `).
fn pem_boundary<'a>(line: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    line.strip_prefix(prefix)?.strip_suffix(b"-----")
}

fn decode_certificate(base64_text: &[u8], block: usize) -> Result<Vec<u8>, String> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64_text)
        .map_err(|_| format!("certificate in pem block {block} is not valid base64"))?;
    if !is_one_der_sequence(&der) {
        return Err(format!(
            "certificate in pem block {block} is not a DER-encoded X.509 certificate"
        ));
    }
    Ok(der)
}

/// True when `der` is exactly one DER `SEQUENCE` (tag 0x30, definite length), as every
/// X.509 certificate is. The TLS layer checks the rest; this catches truncated or
/// mislabelled blocks early, with a message that names them.
fn is_one_der_sequence(der: &[u8]) -> bool {
    let [0x30, first, rest @ ..] = der else {
        return false;
    };
    let (len, rest) = match *first {
        n @ 0..=0x7f => (usize::from(n), rest),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            if rest.len() < n {
                return false;
            }
            let (bytes, rest) = rest.split_at(n);
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, rest)
        }
        // Indefinite (0x80) and absurd lengths are not DER.
        _ => return false,
    };
    len == rest.len()
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

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";

    #[test]
    fn pem_with_text_around_and_other_blocks() {
        let pem = format!(
            "# a comment\nsubject=CN = x\n{CERT}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\r\n{CERT}"
        );
        let certs = parse_pem_certificates(pem.as_bytes()).unwrap();
        assert_eq!(certs, vec![vec![0x30, 3, 2, 1, 1]; 2]);
    }

    #[test]
    fn pem_errors_name_the_block() {
        let err = |pem: &str| parse_pem_certificates(pem.as_bytes()).unwrap_err();
        assert_eq!(
            err(""),
            "no pem certificate found (expected -----BEGIN CERTIFICATE-----)"
        );
        assert_eq!(
            err("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            "none of the 1 pem blocks is a CERTIFICATE"
        );
        assert_eq!(
            err(&format!("{CERT}-----BEGIN CERTIFICATE-----\nMAMCAQE=\n")),
            "pem block 2 has no END line"
        );
        assert_eq!(
            err("-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END X-----\n"),
            "pem block 1 ends with a different label than it begins with"
        );
        assert_eq!(
            err("-----BEGIN CERTIFICATE-----\nMAMC*QE=\n-----END CERTIFICATE-----\n"),
            "certificate in pem block 1 is not valid base64"
        );
        // Valid base64, but one byte short of the SEQUENCE's length.
        assert_eq!(
            err("-----BEGIN CERTIFICATE-----\nMAQCAQE=\n-----END CERTIFICATE-----\n"),
            "certificate in pem block 1 is not a DER-encoded X.509 certificate"
        );
    }

    #[test]
    fn der_sequence_lengths() {
        assert!(is_one_der_sequence(&[0x30, 0]));
        assert!(is_one_der_sequence(&[0x30, 0x81, 1, 5]));
        let mut long = vec![0x30, 0x82, 0x01, 0x00];
        long.resize(4 + 256, 0);
        assert!(is_one_der_sequence(&long));
        assert!(!is_one_der_sequence(&[0x31, 0]));
        assert!(!is_one_der_sequence(&[0x30, 0x80, 0, 0]));
        assert!(!is_one_der_sequence(&[0x30, 0x82, 1]));
        assert!(!is_one_der_sequence(&[0x30, 1, 0, 0]));
        assert!(!is_one_der_sequence(&[]));
    }

    #[test]
    fn roots_debug_shows_counts_only() {
        let one = Roots::Specific(Arc::new(vec![vec![0x30, 0]]));
        assert_eq!(format!("{one:?}"), "1");
        assert_eq!(format!("{:?}", Roots::Default), "default");
    }
}
