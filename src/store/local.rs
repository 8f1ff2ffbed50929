//! Each thread's copies of the fresh tokens it got from a store: what makes a hit lock-free.
//!
//! A copy is used only while the store's generation is the one it was taken at; every
//! change to a token bumps the generation, so every thread's next call sees the change.
//! A copy is a new `Arc` of a clone of the token, so the reference count a hit touches is
//! that thread's alone: hits on many threads share no memory that anyone writes.

use std::cell::RefCell;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};

use super::{Buckets, Held, Now};
use crate::request::TokenRequest;
use crate::token::Token;

/// The fresh token for `request` from this thread's copies of `store`'s tokens, if they
/// were taken at `generation`.
pub(super) fn hit(
    store: &Arc<AtomicU64>,
    generation: u64,
    request: &TokenRequest,
    now: Now,
) -> Option<Arc<Token>> {
    // `try_with`: during thread teardown the copies may be gone; the slow path still works.
    LOCAL
        .try_with(|local| {
            let local = local.borrow();
            let mine = local
                .iter()
                .find(|l| Weak::as_ptr(&l.store) == Arc::as_ptr(store))?;
            if mine.generation != generation {
                return None;
            }
            let held = find(&mine.tokens, request)?;
            held.is_fresh(now).then(|| Arc::clone(&held.token))
        })
        .ok()
        .flatten()
}

thread_local! {
    /// This thread's copies of fresh tokens, per store.
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

/// One thread's copies of one store's fresh tokens.
struct Local {
    /// Names the store (its generation counter) without keeping it alive.
    store: Weak<AtomicU64>,
    /// The store's generation when these copies were taken.
    generation: u64,
    tokens: Buckets<(Arc<str>, Held)>,
}

/// Keeps a copy of `held` for this thread's next hits.
pub(super) fn remember(
    store: &Arc<AtomicU64>,
    generation: u64,
    request: &TokenRequest,
    held: &Held,
) {
    let copy = held.copy();
    // During thread teardown there is nowhere to keep it: the next call takes the lock.
    let _ = LOCAL.try_with(|local| {
        let mut local = local.borrow_mut();
        // Copies of stores that are gone are of no use to anyone.
        local.retain(|l| l.store.strong_count() > 0);
        let index = match local
            .iter()
            .position(|l| Weak::as_ptr(&l.store) == Arc::as_ptr(store))
        {
            Some(i) => i,
            None => {
                local.push(Local {
                    store: Arc::downgrade(store),
                    generation,
                    tokens: Buckets::default(),
                });
                local.len() - 1
            }
        };
        let mine = &mut local[index];
        if mine.generation != generation {
            mine.generation = generation;
            mine.tokens.clear();
        }
        let bucket = mine.tokens.entry(request.key_hash()).or_default();
        bucket.retain(|(key, _)| **key != *request.key());
        bucket.push((Arc::clone(request.key_arc()), copy));
    });
}

/// The copy for `request`: the same key by pointer (the request, or a clone of the one the
/// copy was taken for, the usual case) or else by text.
fn find<'a>(map: &'a Buckets<(Arc<str>, Held)>, request: &TokenRequest) -> Option<&'a Held> {
    let mine = request.key_arc();
    map.get(&request.key_hash())?
        .iter()
        .find(|(key, _)| Arc::ptr_eq(key, mine) || **key == **mine)
        .map(|(_, held)| held)
}
