//! `logto-m2m verify`: a token checked as an API would check it, with the library's
//! `Verifier` against the Logto at `LOGTO_ENDPOINT`.

use logto_m2m::{Claims, Verifier};
use miniserde::Serialize;

use crate::flags::Options;
use crate::input::read_stdin_token;
use crate::output::{Failure, write_stdout};
use crate::setup::Env;

/// Verifies the token for `--resource` with every `--scope` required, against the Logto
/// at `LOGTO_ENDPOINT`: the claims as JSON on stdout, or the reason (the library's reasons
/// never quote the token).
pub(crate) fn run(opts: &Options) -> Result<(), Failure> {
    let audience = opts.audience.as_deref().ok_or_else(|| {
        Failure::Usage("verify needs --resource <api> (the audience the token must have)".into())
    })?;
    let env = Env::with(opts);
    let endpoint = env
        .vars
        .get("LOGTO_ENDPOINT")?
        .ok_or_else(|| Failure::Usage("verify needs LOGTO_ENDPOINT (the Logto base url)".into()))?;
    let mut verifier =
        Verifier::logto(&endpoint).map_err(|e| Failure::Usage(format!("LOGTO_ENDPOINT: {e}")))?;
    // The keys are fetched as the token is: the same CAs; the environment's proxy.
    if let Some(trust) = env.trust()? {
        verifier = verifier
            .root_certificates_pem(&trust.pem)
            .map_err(|e| trust.failure(e))?;
    }
    let token = match opts.target.as_deref() {
        None | Some("-") => read_stdin_token()?,
        Some(token) => token.to_owned(),
    };
    let scopes: Vec<&str> = opts.required_scopes.iter().map(String::as_str).collect();
    let claims = verifier.verify(&token, audience, &scopes)?;
    write_stdout(&format!(
        "{}\n",
        miniserde::json::to_string(&Json::from(&claims))
    ))
}

/// The verified claims as one JSON object, in this order; absent claims are `null`.
#[derive(Serialize)]
struct Json<'a> {
    iss: Option<&'a str>,
    sub: Option<&'a str>,
    client_id: Option<&'a str>,
    aud: &'a [String],
    scope: Option<&'a str>,
    organization_id: Option<&'a str>,
    iat: Option<i64>,
    exp: Option<i64>,
}

impl<'a> From<&'a Claims> for Json<'a> {
    fn from(c: &'a Claims) -> Json<'a> {
        Json {
            iss: c.iss.as_deref(),
            sub: c.sub.as_deref(),
            client_id: c.client_id.as_deref(),
            aud: &c.aud,
            scope: c.scope.as_deref(),
            organization_id: c.organization_id.as_deref(),
            iat: c.iat,
            exp: c.exp,
        }
    }
}
