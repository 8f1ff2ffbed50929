//! The `LOGTO_*` variables as a run sees them: a flag's value in place of the variable it
//! stands in for (`--timeout` for `LOGTO_TIMEOUT`, ...), the environment otherwise. The
//! library reads its own variables through it too (`Config::from_vars`), so a flag and its
//! variable are read, checked and reported alike.

use std::ffi::OsString;

use crate::output::Failure;

/// The variables, under the values of the flags that stand in for some of them.
#[derive(Clone, Copy)]
pub(crate) struct Vars<'a> {
    /// (variable, value) of each flag given that stands in for a variable.
    flags: &'a [(&'static str, String)],
}

impl<'a> Vars<'a> {
    /// The environment alone.
    pub(crate) fn env() -> Vars<'static> {
        Vars { flags: &[] }
    }

    /// The environment under these flags' values: (variable, value) pairs.
    pub(crate) fn with(flags: &'a [(&'static str, String)]) -> Vars<'a> {
        Vars { flags }
    }

    /// The flag's value for `name`, when one was given (empty included).
    pub(crate) fn flag(&self, name: &str) -> Option<&'a str> {
        self.flags
            .iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, value)| value.as_str())
    }

    /// `name` as the library reads it: the flag's value, else the environment's.
    pub(crate) fn os(&self, name: &str) -> Option<OsString> {
        match self.flag(name) {
            Some(value) => Some(value.into()),
            None => std::env::var_os(name),
        }
    }

    /// `name` as text; `None` when unset or empty (as the library reads its variables).
    pub(crate) fn get(&self, name: &str) -> Result<Option<String>, Failure> {
        match self.os(name).map(OsString::into_string) {
            None => Ok(None),
            Some(Ok(text)) => Ok(Some(text).filter(|t| !t.is_empty())),
            Some(Err(_)) => Err(Failure::Usage(format!(
                "environment variable {name}: not UTF-8"
            ))),
        }
    }
}
