//! Redis Sentinel: the sentinels name the master; calls go to it, and after a failover to
//! the one they name next.
//!
//! The redis crate's own Sentinel client is not used: its blocking calls connect to
//! sentinels and masters without a timeout, so a sentinel that accepts and never answers
//! would hold a caller forever. This one asks `SENTINEL get-master-addr-by-name` itself,
//! through the cache's connections, each within what is left of the call's deadline:
//!
//! - The connection to the master a sentinel named is kept and reused. Every new
//!   connection (the first, one to replace a connection the master closed or that answered
//!   `READONLY`, one for a call that finds the kept one in use) goes to the master the
//!   sentinels name at that moment, asked once per call, never to an address kept from
//!   before: the old master may be back there, restarted empty and a master of its own
//!   until the sentinels make it a replica, and would answer with no entry and no error.
//!   While a failover is under way they still name the old master: the call fails at once
//!   and the store gets its token from the token endpoint.
//! - A new connection is used only once the server says it is the master (`ROLE`): a
//!   sentinel that has not learned of a failover yet may name one that is not. A user whose
//!   ACL does not allow `ROLE` takes the sentinels' word.
//! - Sentinels are asked in turn, each with an equal share of the time left, so one that
//!   never answers can't use up the call; the one that answered is asked first next time.
//! - Sentinels are asked without a password; one that answers `NOAUTH` is asked again with
//!   the URL's user and password (a sentinel with `requirepass`, as the master's).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ::redis::{Connection, RedisError, Value};

use super::Settings;
use super::connect::{Fail, Node, Pool, remaining, run_on};
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
        // The connection kept to the master named last: no question to the sentinels. One
        // that was closed (a restart, a failover: the sentinels close the connections of a
        // server they promote or demote) or answers READONLY says the master may have moved.
        let known = lock(&self.master).clone();
        if let Some(master) = known {
            match pool.run_idle(&master, deadline, f) {
                None => {}
                Some(Ok(value)) => return Ok(value),
                Some(Err(e)) if is_moved(&e) => {
                    self.forget(&master);
                    if remaining(deadline) <= super::MIN_WAIT {
                        return Err(e);
                    }
                }
                Some(Err(e)) => return Err(e),
            }
        }
        // A new connection goes where the sentinels point now, never to an address kept from
        // before: the old master may be back there, restarted empty, a master of its own
        // until the sentinels make it a replica (8 s or more), and would answer a read with
        // no entry and grant a lock, with no error. And it is used only once the server says
        // it is the master: a sentinel that has not yet learned of a failover may name one
        // that is not. (What the Sentinel client guidelines ask of a client: resolve again
        // at each reconnection, then check ROLE.)
        let named = self.discover(settings, pool, deadline)?;
        let result = pool.run_new(&named, deadline, |con, by| is_master(con, by, &named), f);
        if let Err(e) = &result {
            if is_moved(e) || matches!(e, Fail::Said(_)) {
                // Asked again next call.
                self.forget(&named);
            }
        }
        result
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

/// A failure that says the master may be elsewhere now: the server is gone (refused, the
/// connection closed) or was demoted (`READONLY`).
fn is_moved(e: &Fail) -> bool {
    e.is_gone() || e.code() == Some("READONLY")
}

/// Checks, by `deadline`, that `node` on `con` says it is the master (`ROLE`). A user
/// whose ACL does not allow `ROLE` (it is in `@admin`) takes the sentinels' word for it.
fn is_master(con: &mut Connection, deadline: Instant, node: &Node) -> Result<(), Fail> {
    let answer = run_on(con, deadline, &|con| {
        ::redis::cmd("ROLE").query::<Value>(con)
    });
    let role = match answer {
        Ok(Value::Array(parts)) => match parts.first() {
            Some(Value::BulkString(role)) => String::from_utf8_lossy(role).into_owned(),
            _ => String::new(),
        },
        Ok(_) => String::new(),
        Err(e) if e.code() == Some("NOPERM") => return Ok(()),
        Err(e) => return Err(Fail::Redis(e)),
    };
    if role == "master" {
        return Ok(());
    }
    let role = if role.is_empty() { "unknown" } else { &role };
    Err(Fail::Said(format!(
        "{} is not the master (its role: {role}), though a sentinel names it: a failover is \
         under way, or the sentinel has not learned of one",
        node.key
    )))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only addresses are behind these locks, consistent after any panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
