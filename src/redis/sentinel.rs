//! Redis Sentinel: the sentinels name the master; calls go to it, and after a failover to
//! the one they name next.
//!
//! The redis crate's own Sentinel client is not used: its blocking calls connect to
//! sentinels and masters without a timeout, so a sentinel that accepts and never answers
//! would hold a caller forever. This one asks `SENTINEL get-master-addr-by-name` itself,
//! through the cache's connections, each within what is left of the call's deadline:
//!
//! - The master's address is kept once a sentinel has named it. When the master refuses,
//!   drops the connection or answers `READONLY` (it was demoted), the sentinels are asked
//!   again, once per call, and the call goes to the master they name if that is another.
//!   While a failover is under way they still name the old master: the call fails at once
//!   and the store gets its token from the token endpoint.
//! - Sentinels are asked in turn, each with an equal share of the time left, so one that
//!   never answers can't use up the call; the one that answered is asked first next time.
//! - Sentinels are asked without a password; one that answers `NOAUTH` is asked again with
//!   the URL's user and password (a sentinel with `requirepass`, as the master's).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ::redis::{Connection, RedisError, Value};

use super::Settings;
use super::connect::{Fail, Node, Pool, remaining};
use super::url::HostPort;

pub(super) struct Sentinel {
    /// In the order to ask them.
    sentinels: Mutex<Vec<Arc<Node>>>,
    master_name: String,
    /// The master the sentinels named last.
    master: Mutex<Option<Arc<Node>>>,
}

impl Sentinel {
    pub(super) fn new(
        settings: &Settings,
        sentinels: &[HostPort],
        master_name: String,
    ) -> Result<Sentinel, RedisError> {
        let sentinels = sentinels
            .iter()
            .map(|s| settings.node(s, false).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Sentinel {
            sentinels: Mutex::new(sentinels),
            master_name,
            master: Mutex::new(None),
        })
    }

    /// Runs `f` on the master, by `deadline`.
    pub(super) fn run<T>(
        &self,
        settings: &Settings,
        pool: &Pool,
        deadline: Instant,
        f: &impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, Fail> {
        let known = lock(&self.master).clone();
        let master = match known {
            Some(m) => m,
            None => self.discover(settings, pool, deadline)?,
        };
        let failed = match pool.run(&master, deadline, f) {
            Ok(value) => return Ok(value),
            Err(e) if e.is_gone() || e.code() == Some("READONLY") => e,
            Err(e) => return Err(e),
        };
        // A failover may have moved the master: ask the sentinels once more.
        self.forget(&master);
        if remaining(deadline) <= super::MIN_WAIT {
            return Err(failed);
        }
        let named = self.discover(settings, pool, deadline)?;
        if named.key == master.key {
            // The failover has not happened (yet): the sentinels still name this one.
            return Err(failed);
        }
        pool.run(&named, deadline, f)
    }

    fn forget(&self, master: &Arc<Node>) {
        let mut known = lock(&self.master);
        if known.as_ref().is_some_and(|m| Arc::ptr_eq(m, master)) {
            *known = None;
        }
    }

    /// Asks the sentinels in turn for the master's address.
    fn discover(
        &self,
        settings: &Settings,
        pool: &Pool,
        deadline: Instant,
    ) -> Result<Arc<Node>, Fail> {
        let sentinels = lock(&self.sentinels).clone();
        let mut last = None;
        for (i, sentinel) in sentinels.iter().enumerate() {
            // An equal share of what is left for each sentinel still to ask.
            let left = deadline.saturating_duration_since(Instant::now());
            let share = left / u32::try_from(sentinels.len() - i).unwrap_or(u32::MAX);
            let by = Instant::now() + share.max(super::MIN_WAIT);
            match pool.run(sentinel, by.min(deadline), &|con| self.ask(settings, con)) {
                Ok(Some(address)) => {
                    let master = Arc::new(settings.node(&address, true)?);
                    *lock(&self.master) = Some(Arc::clone(&master));
                    if i > 0 {
                        let mut order = lock(&self.sentinels);
                        if let Some(at) = order.iter().position(|s| Arc::ptr_eq(s, sentinel)) {
                            let first = order.remove(at);
                            order.insert(0, first);
                        }
                    }
                    return Ok(master);
                }
                Ok(None) => {
                    last = Some(Fail::Said(format!(
                        "sentinel {} knows no master named {:?}",
                        sentinel.key, self.master_name
                    )));
                }
                Err(Fail::Redis(e)) => {
                    last = Some(Fail::Said(format!(
                        "sentinel {}: {}",
                        sentinel.key,
                        settings.reason(&e)
                    )))
                }
                Err(e) => last = Some(e),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(last.unwrap_or_else(|| Fail::Said("no sentinel to ask".into())))
    }

    /// `SENTINEL get-master-addr-by-name` on one sentinel: the address, or `None` when it
    /// knows no such master.
    fn ask(
        &self,
        settings: &Settings,
        con: &mut Connection,
    ) -> Result<Option<HostPort>, RedisError> {
        let query = |con: &mut Connection| {
            ::redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.master_name)
                .query::<Value>(con)
        };
        let answer = match query(con) {
            Err(e) if e.code() == Some("NOAUTH") && settings.password.is_some() => {
                let mut auth = ::redis::cmd("AUTH");
                if let Some(user) = &settings.username {
                    auth.arg(user);
                }
                auth.arg(settings.password.as_deref().unwrap_or_default());
                auth.query::<()>(con)?;
                query(con)?
            }
            other => other?,
        };
        Ok(match answer {
            Value::Array(parts) => match parts.as_slice() {
                [Value::BulkString(host), Value::BulkString(port)] => {
                    let host = String::from_utf8_lossy(host);
                    let port = String::from_utf8_lossy(port);
                    HostPort::from_reply(&format!("{host}:{port}"))
                }
                _ => None,
            },
            _ => None,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only addresses are behind these locks, consistent after any panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
