//! The opt-in cache of unpacked keys ([`CacheConfig`]): what a DCO
//! command needs, kept between calls so that a command in steady state is
//! one AES-GCM operation.
//!
//! What it means: an encryption key (GUEK, GBEK, DK) stays a session
//! object of the token (sensitive, non-extractable, in the module) for up
//! to [`CacheConfig::ttl`] after it was unpacked, instead of for one call;
//! the AK stays in host memory (wiped when evicted, purged or dropped) for
//! as long, instead of for one call. Entries are keyed by the whole
//! packaged record, so by its id (device, client, role, generation) and
//! its KEK's check value: a new generation or another KEK is another
//! entry, and a record whose octets differ never hits. At most
//! [`CacheConfig::capacity`] entries of each kind; the oldest goes first.
//! [`Token::purge_cache`](crate::Token::purge_cache) drops everything at
//! once (after a rotation or a compromise). The cached objects belong to
//! one session of their own, so commands through the cache take turns.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use dlms_sec::key::package::RECORD_LEN;
use zeroize::Zeroizing;

use crate::calls;

/// How many unpacked keys to keep, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Entries of each kind (key objects, AKs) at most.
    pub capacity: usize,
    /// How long an entry lives after it was unpacked.
    pub ttl: Duration,
}

struct Entry<V> {
    record: [u8; RECORD_LEN],
    born: Instant,
    value: V,
}

/// The cache's state: its session, key objects and AKs.
pub(crate) struct Inner {
    pub(crate) session: Option<Session>,
    objects: Vec<Entry<ObjectHandle>>,
    aks: Vec<Entry<Zeroizing<[u8; 16]>>>,
}

pub(crate) struct KeyCache {
    config: CacheConfig,
    pub(crate) inner: Mutex<Inner>,
}

impl KeyCache {
    pub(crate) fn new(config: CacheConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                session: None,
                objects: Vec::new(),
                aks: Vec::new(),
            }),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) const fn config(&self) -> CacheConfig {
        self.config
    }
}

fn fresh<V>(entries: &[Entry<V>], record: &[u8; RECORD_LEN], ttl: Duration) -> Option<usize> {
    entries
        .iter()
        .position(|e| &e.record == record && e.born.elapsed() < ttl)
}

impl Inner {
    /// A cached key object for `record`, if one is fresh.
    pub(crate) fn object(&self, record: &[u8; RECORD_LEN], ttl: Duration) -> Option<ObjectHandle> {
        fresh(&self.objects, record, ttl).and_then(|i| self.objects.get(i).map(|e| e.value))
    }

    /// A cached AK for `record`, if one is fresh.
    pub(crate) fn ak(&self, record: &[u8; RECORD_LEN], ttl: Duration) -> Option<[u8; 16]> {
        fresh(&self.aks, record, ttl).and_then(|i| self.aks.get(i).map(|e| *e.value))
    }

    /// Keeps `handle` for `record`, evicting stale entries and the oldest
    /// beyond `config.capacity`.
    pub(crate) fn keep_object(
        &mut self,
        record: [u8; RECORD_LEN],
        handle: ObjectHandle,
        config: CacheConfig,
        session: &Session,
    ) {
        evict(
            &mut self.objects,
            &mut self.aks,
            config.ttl,
            config.capacity.saturating_sub(1),
            Some(session),
        );
        self.objects.push(Entry {
            record,
            born: Instant::now(),
            value: handle,
        });
    }

    pub(crate) fn keep_ak(
        &mut self,
        record: [u8; RECORD_LEN],
        ak: [u8; 16],
        config: CacheConfig,
        session: &Session,
    ) {
        evict(
            &mut self.objects,
            &mut self.aks,
            config.ttl,
            config.capacity.saturating_sub(1),
            Some(session),
        );
        self.aks.push(Entry {
            record,
            born: Instant::now(),
            value: Zeroizing::new(ak),
        });
    }

    /// Drops every entry (destroying the key objects, wiping the AKs).
    pub(crate) fn purge(&mut self) {
        evict(
            &mut self.objects,
            &mut self.aks,
            Duration::ZERO,
            0,
            self.session.as_ref(),
        );
    }

    /// Forgets everything and the session with it (after a failure: the
    /// objects die with the session).
    pub(crate) fn reset(&mut self) {
        self.objects.clear();
        self.aks.clear();
        self.session = None;
    }

    /// Entries held (key objects, AKs).
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.objects.len(), self.aks.len())
    }
}

/// Drops stale entries, then the oldest beyond `keep`, destroying their
/// key objects in `session`.
fn evict(
    objects: &mut Vec<Entry<ObjectHandle>>,
    aks: &mut Vec<Entry<Zeroizing<[u8; 16]>>>,
    ttl: Duration,
    keep: usize,
    session: Option<&Session>,
) {
    let gone = |e: &Entry<ObjectHandle>| {
        if let Some(s) = session {
            let _ = calls::destroy_object(s, e.value);
        }
    };
    objects.retain(|e| {
        let live = e.born.elapsed() < ttl;
        if !live {
            gone(e);
        }
        live
    });
    while objects.len() > keep {
        let e = objects.remove(0);
        gone(&e);
    }
    aks.retain(|e| e.born.elapsed() < ttl);
    while aks.len() > keep {
        aks.remove(0);
    }
}
