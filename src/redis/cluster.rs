//! Redis Cluster: each key's slot is served by one master; calls go to it, following
//! `MOVED` and `ASK` when the slots move.
//!
//! The redis crate's own cluster client is not used: its retries sleep and reconnect to
//! every node with the timeouts it was built with, whatever is left of a call's deadline.
//! This one is small because every call here touches one slot: a token's key and its
//! lock's key carry the same hash tag (`{<id>}`), so they live in one slot on one node and
//! the lock still guards its token.
//!
//! - The slot map comes from `CLUSTER SLOTS`, asked of the nodes the map knows, then of
//!   the URL's, each with an equal share of the time left.
//! - `MOVED` (the slot has a new owner: a failover or resharding) asks for the map again
//!   and goes to the new owner; `ASK` (a slot being migrated) goes to the named node once,
//!   after `ASKING`; `TRYAGAIN` and `CLUSTERDOWN` are waited out briefly; a node that
//!   refuses or drops the connection has the map asked for again, of the others. At most
//!   [`MAX_HOPS`] such steps per call, all within its deadline.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use ::redis::{Connection, RedisError, Value};

use super::connect::{Fail, Node, Pool, remaining};
use super::url::HostPort;
use super::{MIN_WAIT, Settings};

/// Redirects, retries and map refreshes one call may take.
const MAX_HOPS: usize = 5;

/// The first pause after `TRYAGAIN` or `CLUSTERDOWN`; it doubles for each further one.
const FIRST_PAUSE: Duration = Duration::from_millis(10);

pub(super) struct Cluster {
    seeds: Vec<HostPort>,
    /// Slot ranges and their masters, sorted by first slot.
    map: Mutex<Vec<Range>>,
}

#[derive(Clone)]
struct Range {
    first: u16,
    last: u16,
    node: Arc<Node>,
    address: HostPort,
}

impl Cluster {
    pub(super) fn new(seeds: Vec<HostPort>) -> Cluster {
        Cluster {
            seeds,
            map: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on the master of `slot`, by `deadline`.
    pub(super) fn run<T>(
        &self,
        settings: &Settings,
        pool: &Pool,
        slot: u16,
        deadline: Instant,
        f: &impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, Fail> {
        let (mut node, mut at) = match self.owner(slot) {
            Some(owner) => owner,
            None => {
                self.refresh(settings, pool, deadline, None)?;
                self.owner(slot).ok_or_else(|| no_owner(slot))?
            }
        };
        let mut asking = false;
        let mut pause = FIRST_PAUSE;
        let mut hops = 0;
        loop {
            let result = if asking {
                pool.run(&node, deadline, &|con: &mut Connection| {
                    ::redis::cmd("ASKING").query::<()>(con)?;
                    f(con)
                })
            } else {
                pool.run(&node, deadline, f)
            };
            let failed = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            hops += 1;
            if hops > MAX_HOPS || remaining(deadline) <= MIN_WAIT {
                return Err(failed);
            }
            asking = false;
            let redirect = match &failed {
                Fail::Redis(e) => e
                    .redirect_node()
                    .and_then(|(at, _)| HostPort::from_reply(at)),
                Fail::Said(_) => None,
            };
            match (failed.code(), redirect) {
                (Some("MOVED"), Some(to)) => {
                    // The map is out of date: ask the new owner for it. MOVED has the last
                    // word on this slot, even over a map that is still behind.
                    let _ = self.refresh(settings, pool, deadline, Some(&to));
                    node = match self.owner(slot) {
                        Some((n, a)) if a == to => n,
                        _ => self.known(settings, &to)?,
                    };
                    at = to;
                }
                (Some("ASK"), Some(to)) => {
                    node = self.known(settings, &to)?;
                    at = to;
                    asking = true;
                }
                (Some("TRYAGAIN" | "CLUSTERDOWN"), _) => {
                    thread::sleep(pause.min(remaining(deadline) / 2));
                    pause *= 2;
                }
                _ if failed.is_gone() => {
                    // The node went away (a failover is promoting a replica): the others
                    // know who serves the slot now, or will soon.
                    if self.refresh(settings, pool, deadline, None).is_err() {
                        return Err(failed);
                    }
                    match self.owner(slot) {
                        Some((n, a)) if a != at => (node, at) = (n, a),
                        _ => return Err(failed),
                    }
                }
                _ => return Err(failed),
            }
        }
    }

    /// The master the map says serves `slot`, and its address.
    fn owner(&self, slot: u16) -> Option<(Arc<Node>, HostPort)> {
        let map = lock(&self.map);
        let at = map.partition_point(|r| r.last < slot);
        map.get(at)
            .filter(|r| r.first <= slot)
            .map(|r| (Arc::clone(&r.node), r.address.clone()))
    }

    /// Asks for the slot map: of `first` if given, then of the nodes the map knows and of
    /// the URL's, until one answers.
    fn refresh(
        &self,
        settings: &Settings,
        pool: &Pool,
        deadline: Instant,
        first: Option<&HostPort>,
    ) -> Result<(), Fail> {
        let mut candidates: Vec<HostPort> = first.into_iter().cloned().collect();
        for address in lock(&self.map)
            .iter()
            .map(|r| &r.address)
            .chain(&self.seeds)
        {
            if !candidates.contains(address) {
                candidates.push(address.clone());
            }
        }
        let mut last = None;
        for (i, address) in candidates.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let share = left / u32::try_from(candidates.len() - i).unwrap_or(u32::MAX);
            let by = (Instant::now() + share.max(MIN_WAIT)).min(deadline);
            let node = match self.known(settings, address) {
                Ok(node) => node,
                Err(e) => {
                    last = Some(Fail::Redis(e));
                    continue;
                }
            };
            let slots = pool.run(&node, by, &|con| {
                ::redis::cmd("CLUSTER").arg("SLOTS").query::<Value>(con)
            });
            match slots.map(|reply| parse_slots(&reply, address)) {
                Ok(Some(ranges)) if !ranges.is_empty() => {
                    let map = ranges
                        .into_iter()
                        .map(|(first, last, address)| {
                            let node = self.known(settings, &address)?;
                            Ok(Range {
                                first,
                                last,
                                node,
                                address,
                            })
                        })
                        .collect::<Result<Vec<_>, RedisError>>()?;
                    *lock(&self.map) = map;
                    return Ok(());
                }
                Ok(_) => {
                    last = Some(Fail::Said(format!(
                        "cluster node {address} answered CLUSTER SLOTS with no slot map"
                    )))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Fail::Said("no cluster node to ask for the slot map".into())))
    }

    /// The node for `address`: the map's own (and so its idle connection), else a new one.
    fn known(&self, settings: &Settings, address: &HostPort) -> Result<Arc<Node>, RedisError> {
        let found = lock(&self.map)
            .iter()
            .find(|r| r.address == *address)
            .map(|r| Arc::clone(&r.node));
        match found {
            Some(node) => Ok(node),
            None => settings.node(address, true).map(Arc::new),
        }
    }
}

fn no_owner(slot: u16) -> Fail {
    Fail::Said(format!(
        "the cluster's slot map has no node for slot {slot}"
    ))
}

/// `CLUSTER SLOTS`: `[[first, last, [host, port, id, ...], replicas...], ...]` as sorted
/// `(first, last, master)`; `None` if it is anything else. An empty host means the node
/// that answered (`asked`).
fn parse_slots(reply: &Value, asked: &HostPort) -> Option<Vec<(u16, u16, HostPort)>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(parts) = range else {
            return None;
        };
        let [
            Value::Int(first),
            Value::Int(last),
            Value::Array(master),
            ..,
        ] = parts.as_slice()
        else {
            return None;
        };
        let [Value::BulkString(host), Value::Int(port), ..] = master.as_slice() else {
            return None;
        };
        let first = u16::try_from(*first).ok().filter(|s| *s < SLOTS)?;
        let last = u16::try_from(*last)
            .ok()
            .filter(|s| *s < SLOTS && *s >= first)?;
        let port = u16::try_from(*port).ok().filter(|p| *p > 0)?;
        let host = match std::str::from_utf8(host).ok()? {
            "" | "?" => asked.host.clone(),
            h => h.to_owned(),
        };
        out.push((first, last, HostPort { host, port }));
    }
    out.sort_by_key(|r| r.0);
    Some(out)
}

/// The number of hash slots.
const SLOTS: u16 = 16384;

/// The slot of a key whose hash tag is `tag` (the text between `{` and `}`): CRC16
/// (XMODEM) of it, modulo 16384, as the cluster spec says.
pub(super) fn slot(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for &byte in tag.as_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only the slot map is behind it, replaced whole: consistent after any panic.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn slots_as_the_cluster_spec_says() {
        // The spec's CRC16 check value, and slots `CLUSTER KEYSLOT` gives for these tags.
        assert_eq!(slot("123456789"), 0x31c3 % SLOTS);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
        assert_eq!(slot(""), 0);
    }

    #[test]
    fn slot_map_replies() {
        let asked = HostPort {
            host: "10.0.0.1".into(),
            port: 7000,
        };
        let node = |host: &str, port| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                node("10.0.0.2", 7001),
            ]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("", 7000),
                node("10.0.0.9", 7009),
            ]),
        ]);
        let map = parse_slots(&reply, &asked).unwrap();
        assert_eq!(map[0], (0, 5460, asked.clone()));
        assert_eq!(map[1].2.host, "10.0.0.2");
        for bad in [
            Value::Nil,
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(10),
                Value::Int(5),
                node("h", 1),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(16384),
                node("h", 1),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(1),
                node("h", 0),
            ])]),
        ] {
            assert_eq!(parse_slots(&bad, &asked), None, "{bad:?}");
        }
    }
}
