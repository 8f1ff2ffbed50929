//! Encoders for what the crate sends: `application/x-www-form-urlencoded` (the token
//! request's form, the Basic header's parts) and hex.

/// `application/x-www-form-urlencoded` as WHATWG defines it: alphanumerics and `*-._` stay,
/// space becomes `+`, every other byte becomes `%XX`.
pub(crate) fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    form_urlencode_into(s, &mut out);
    out
}

pub(crate) fn form_urlencode_into(s: &str, out: &mut String) {
    urlencode_into(s, out, "+");
}

/// [`form_urlencode`] with a space as `%20`: what percent-decoders and form-decoders both
/// read as a space, for the Basic header.
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    urlencode_into(s, &mut out, "%20");
    out
}

/// `application/x-www-form-urlencoded` bytes, with `space` for a space.
fn urlencode_into(s: &str, out: &mut String, space: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push_str(space),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

/// `bytes` as lowercase hex digits.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn form_encoding_matches_rfc_6749_examples() {
        // The peer's special clients, as its transcript shows them accepted.
        assert_eq!(
            form_urlencode("s3cr:t+/%&= x~"),
            "s3cr%3At%2B%2F%25%26%3D+x%7E"
        );
        assert_eq!(form_urlencode("m2m:colon"), "m2m%3Acolon");
        assert_eq!(form_urlencode("colon%41+secret"), "colon%2541%2Bsecret");
        assert_eq!(form_urlencode("é"), "%C3%A9");
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex(&[0, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }
}
