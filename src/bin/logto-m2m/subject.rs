//! The flags that make a token act for a user, through Logto's token exchange:
//! `--impersonate <user-id>` (with `--context <json>`), `--pat-file <path>` and
//! `--subject-token-file <path>` (rows of `flags::FLAGS`). `token`, `inspect` and `call`
//! take them, beside
//! `--resource`, `--scope`, `--organization`, `--cache-file` and `--format` as usual; a
//! token file or Redis caches the user's token like an app's, keyed by a hash of the user
//! id or of the file's path, never by the token.

use logto_m2m::{Secret, TokenRequest};
use miniserde::json;

use crate::output::Failure;

/// The subject flags as given.
#[derive(Default)]
pub(crate) struct SubjectFlags {
    pub(crate) impersonate: Option<String>,
    pub(crate) context: Option<String>,
    pub(crate) pat_file: Option<String>,
    pub(crate) subject_token_file: Option<String>,
}

impl SubjectFlags {
    /// `request`, acting for the user the flags name; a usage error for flags that don't
    /// go together.
    pub(crate) fn apply(&self, request: TokenRequest) -> Result<TokenRequest, Failure> {
        let given = [&self.impersonate, &self.pat_file, &self.subject_token_file]
            .iter()
            .filter(|f| f.is_some())
            .count();
        if given > 1 {
            return Err(Failure::Usage(
                "give one of --impersonate, --pat-file and --subject-token-file".into(),
            ));
        }
        if self.context.is_some() && self.impersonate.is_none() {
            return Err(Failure::Usage(
                "--context goes with --impersonate <user-id>".into(),
            ));
        }
        let mut request = request;
        if let Some(user) = &self.impersonate {
            request = request.impersonate(user);
        }
        if let Some(context) = &self.context {
            // Checked here too, so that a typo is a usage error before anything is sent.
            if !matches!(
                json::from_str::<json::Value>(context),
                Ok(json::Value::Object(_))
            ) {
                return Err(Failure::Usage(format!(
                    "--context: {context:?} is not a json object"
                )));
            }
            request = request.impersonation_context(context);
        }
        if let Some(path) = &self.pat_file {
            request = request.personal_access_token(Secret::file(path));
        }
        if let Some(path) = &self.subject_token_file {
            request = request.user_access_token(Secret::file(path));
        }
        Ok(request)
    }
}
