//! The lookup engine: what one call of a use case does, layer by layer.
//!
//! In order: the enable scope, the use case's settings and the call's
//! ramp draw decide which layers it uses; the local layer answers if its
//! entry's generations are the ones this process knows; else one read of
//! the remote layer fetches the entry with its generations; else the
//! function runs, once per entry and generations across the process's
//! threads, and its value is stored in the layers the call uses.

use std::fmt::Display;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Inner;
use crate::cache::flight::{Joined, Lead, Outcome};
use crate::cache::invalidation::{now_ms, EntityTag, Envelope, GLOBAL_GENERATION_KEY};
use crate::cache::scope::is_enabled;
use crate::cache::use_case::{DisabledReason, LayerConfig, UseCase, UseCaseInfo};
use crate::cache::{CacheError, Codec};
use crate::CacheStore;
use crate::{Result, Ttl};

/// What one read of the remote layer found.
struct Remote {
    entry: Option<Bytes>,
    entity: Option<Bytes>,
    global: Option<Bytes>,
}

/// What the leader of a miss needs from the lookup.
struct Miss<'a> {
    key: &'a str,
    generation: &'a str,
    found: Remote,
    remote: Option<LayerConfig>,
    epoch: u64,
    read_at_ms: u64,
    local_expires_at: Option<Instant>,
}

/// The layers one call uses: the use case's settings after its ramps.
struct Layers {
    local: Option<LayerConfig>,
    remote: Option<LayerConfig>,
}

impl<S: CacheStore> Inner<S> {
    /// The value of `use_case` for `id` and `arguments`, through the layers
    /// its settings give this call (see [`UseCase::get`]).
    pub(in crate::cache) fn lookup<C, F, I, A, T, E>(
        &self,
        use_case: &UseCase<S, C, F>,
        id: &I,
        arguments: &A,
    ) -> std::result::Result<T, CacheError<E>>
    where
        C: Codec,
        F: Fn(&I, &A) -> std::result::Result<T, E>,
        I: Display + ?Sized,
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        E: Send + Sync + 'static,
    {
        let meter = use_case.meter();
        let Layers { local, remote } = match self.layers(use_case.info()) {
            Ok(layers) => layers,
            Err(reason) => {
                meter.disabled(reason);
                return use_case.run(id, arguments);
            }
        };

        let id_text = id.to_string();
        let Ok(encoded_arguments) = postcard::to_stdvec(arguments) else {
            meter.error();
            return use_case.run(id, arguments);
        };
        // Computed once for both keys: the entry's and its generation's.
        let tag = EntityTag::new(use_case.key_type(), &id_text);
        let key = tag.entry_key(
            use_case.name(),
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(encoded_arguments),
        );
        let generation = tag.generation_key();

        if local.is_some() {
            if let Some(bytes) = self.local_hit(&key, &generation) {
                if let Some(value) = use_case.decode(&bytes) {
                    meter.local_hit();
                    return Ok(value);
                }
                self.local.invalidate(&key);
            }
        }

        // Taken before the read: staleness is bounded from here.
        let epoch = self.local.epoch();
        let read_at_ms = now_ms();
        let local_expires_at = local.map(|layer| Instant::now() + layer.ttl);

        let found = if remote.is_some() {
            match self.read_remote(&key, &generation) {
                Ok(found) => found,
                Err(_) => {
                    // Fail-open: the store is down or refused; the
                    // function answers.
                    meter.error();
                    meter.miss();
                    return use_case.run(id, arguments);
                }
            }
        } else {
            Remote {
                entry: None,
                global: Some(self.tokens.known_or_local(GLOBAL_GENERATION_KEY)),
                entity: Some(self.tokens.known_or_local(&generation)),
            }
        };

        if let Some(bytes) = &found.entry {
            if let Some(envelope) = Envelope::decode(bytes) {
                let current = envelope.is_current(
                    found.global.as_deref().unwrap_or_default(),
                    found.entity.as_deref().unwrap_or_default(),
                );
                if current {
                    if let Some(value) = use_case.decode(&envelope.value) {
                        meter.remote_hit();
                        if let Some(expires_at) = local_expires_at {
                            self.record(epoch, expires_at, &key, &generation, &envelope, bytes);
                        }
                        return Ok(value);
                    }
                }
            }
        }

        meter.miss();
        let flight = format!(
            "{key}\n{}\n{}",
            String::from_utf8_lossy(found.global.as_deref().unwrap_or_default()),
            String::from_utf8_lossy(found.entity.as_deref().unwrap_or_default()),
        );
        let miss = Miss {
            key: &key,
            generation: &generation,
            found,
            remote,
            epoch,
            read_at_ms,
            local_expires_at,
        };
        match self.flights.lead_or_wait(&flight, self.wait_timeout, || {}) {
            Joined::Lead(lead) => self.lead(use_case, lead, miss, || use_case.run(id, arguments)),
            Joined::Value(bytes) => match use_case.decode(&bytes) {
                Some(value) => Ok(value),
                None => use_case.run(id, arguments),
            },
            // Never published here: a use case always has a value.
            Joined::Missing => use_case.run(id, arguments),
            // The function's own error, from the thread that ran it.
            Joined::Failed(error @ CacheError::Load(_)) => Err(error),
            // Fail-open: the leader panicked or is too slow, or the
            // function asks for its own entry (computing it again is all
            // that can be done without waiting for ourselves).
            Joined::Failed(_) => use_case.run(id, arguments),
        }
    }

    /// The layers this call uses, or why it uses none: outside an enable
    /// scope, disabled by its settings, or outside every ramp.
    fn layers(&self, info: UseCaseInfo<'_>) -> std::result::Result<Layers, DisabledReason> {
        if !is_enabled() {
            self.outside_scope(info.name);
            return Err(DisabledReason::Scope);
        }
        let Some(config) = self.provider.config(&info) else {
            return Err(DisabledReason::Config);
        };
        if config.local.is_none() && config.remote.is_none() {
            return Err(DisabledReason::Config);
        }
        // One draw for both layers: ramps nest.
        let draw = fastrand::u8(0..100);
        let in_ramp = |layer: Option<LayerConfig>| {
            layer.filter(|layer| draw < layer.ramp_percent && !layer.ttl.is_zero())
        };
        let (local, remote) = (in_ramp(config.local), in_ramp(config.remote));
        if local.is_none() && remote.is_none() {
            return Err(DisabledReason::Ramp);
        }
        Ok(Layers { local, remote })
    }

    /// The value of `key`'s local entry, if its generations are still the
    /// ones this process knows.
    fn local_hit(&self, key: &str, generation: &str) -> Option<Bytes> {
        let envelope = Envelope::decode(&self.local.get(key)?)?;
        self.tokens
            .vouch_for(generation, &envelope.global, &envelope.entity)
            .then_some(envelope.value)
    }

    /// The entry and its generations, in one round trip when tracking.
    fn read_remote(&self, key: &str, generation: &str) -> Result<Remote> {
        if !self.tokens.tracking() {
            return Ok(Remote {
                entry: self.store.get(key)?,
                global: Some(Bytes::new()),
                entity: Some(Bytes::new()),
            });
        }
        // The generations are read so the newest copy wins (every replica
        // of a replicated cluster): one replica that missed an
        // invalidation must not vouch for an entry it made stale. The
        // global one, recently seen, is not read again: the entry and its
        // entity's generation share a hash tag, so this is one call to
        // the entity's servers.
        let recent_global = self.tokens.recent_global();
        // When the global generation is read, its age counts from here.
        let read_at = recent_global.is_none().then(Instant::now);
        let keys = [key, generation, GLOBAL_GENERATION_KEY];
        let wanted = if recent_global.is_some() { 2 } else { 3 };
        let mut found = self
            .store
            .get_many_latest(&keys[..wanted], &[false, true, true][..wanted])?
            .into_iter();
        let mut next = || {
            found
                .next()
                .map(|item| item.result)
                .transpose()
                .map(Option::flatten)
        };
        let entry = next()?;
        let entity = next()?;
        let global = match recent_global {
            Some(global) => Some(global),
            None => {
                let global = next()?;
                if let (Some(token), Some(read_at)) = (&global, read_at) {
                    self.tokens.saw_global(token, read_at);
                }
                global
            }
        };
        Ok(Remote {
            entry,
            entity,
            global,
        })
    }

    /// Records what a read saw: the generations, and `stored` (the entry
    /// in its envelope) in the local layer until `expires_at`, unless an
    /// invalidation of this process happened since `epoch` (the read may
    /// predate it).
    fn record(
        &self,
        epoch: u64,
        expires_at: Instant,
        key: &str,
        generation: &str,
        envelope: &Envelope,
        stored: &Bytes,
    ) {
        self.local.keep_unless_written(
            epoch,
            || {
                self.tokens
                    .learn(generation, &envelope.global, &envelope.entity);
                self.local.insert(key, stored.clone(), expires_at);
            },
            // An invalidation that slipped in recorded its own token; ours
            // must not stay over it.
            || {
                self.tokens.unlearn(generation);
                self.local.invalidate(key);
            },
        );
    }

    /// Computes (with `run`, the use case's function), stores and hands
    /// the value to the waiters.
    fn lead<C: Codec, F, T: Serialize, E: Send + Sync + 'static>(
        &self,
        use_case: &UseCase<S, C, F>,
        lead: Lead<'_>,
        miss: Miss<'_>,
        run: impl FnOnce() -> std::result::Result<T, CacheError<E>>,
    ) -> std::result::Result<T, CacheError<E>> {
        let Remote { global, entity, .. } = miss.found;
        // Entries are never stored under a missing generation: one that
        // the server lost must make them stale, not fresh again.
        let tokens = if self.tokens.tracking() && miss.remote.is_some() {
            let ensured = self
                .tokens
                .ensure(&self.store, GLOBAL_GENERATION_KEY, global)
                .and_then(|global| {
                    Ok(global.zip(self.tokens.ensure(&self.store, miss.generation, entity)?))
                });
            ensured.unwrap_or_else(|_| {
                use_case.meter().error();
                None
            })
        } else {
            global.zip(entity)
        };
        let value = match run() {
            Ok(value) => value,
            Err(error) => return lead.fail(error),
        };
        let Some(bytes) = use_case.encode(&value) else {
            // Dropping the lead sends the waiters to compute for themselves.
            drop(lead);
            return Ok(value);
        };
        if let Some((global, entity)) = tokens {
            let envelope = Envelope {
                read_at_ms: miss.read_at_ms,
                global,
                entity,
                value: bytes.clone(),
            };
            // Inside a future buffer the entry would read as stale: store
            // nothing, in either layer. Both layers hold the same envelope.
            if envelope.is_current(&envelope.global, &envelope.entity) {
                if let Some(stored) = envelope.encode() {
                    if let Some(remote) = miss.remote {
                        if self
                            .store
                            .set_with_ttl(miss.key, &stored, Ttl::After(remote.ttl))
                            .is_err()
                        {
                            use_case.meter().error();
                        }
                    }
                    if let Some(expires_at) = miss.local_expires_at {
                        let (key, generation) = (miss.key, miss.generation);
                        self.record(miss.epoch, expires_at, key, generation, &envelope, &stored);
                    }
                }
            }
        }
        lead.publish(Outcome::Value(bytes));
        Ok(value)
    }
}
