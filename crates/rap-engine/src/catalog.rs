//! What a query needs to know about a tenant's concepts, kept in memory: each concept's name
//! and aliases (to find mentions in text), which concept each stored image belongs to, as
//! a reference or as a negative example (to turn matched keys into concepts), and each
//! concept's *stability* (how alike its reference photos stay under the encoder's crops; the
//! decision's per-concept floor, see [`crate::retrieve`]).
//!
//! A query asks the store one cheap question, the tenant's memory version
//! ([`rap_memory::ConceptStore::memory_version`], raised in the transaction of every change of
//! its concepts); only when that moved is the catalog read again. So a query costs the same at
//! 10 concepts as at 10,000, an edit counts at the very next query, and every process on a
//! shared store (PostgreSQL replicas) sees every other process's edits.
//!
//! A reference image's stability is computed once from its stored keys (the whole image's key
//! and the keys of its centred crops, [`rap_core::ImageEncoder::key_regions`]) and carried over
//! from one catalog to the next, so a refresh reads vectors only for images that are new since
//! (plus every key's location, a small row per key).

use crate::Engine;
use rap_core::{ConceptId, Error, ImageId, RegionSource, Result, Tenant};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// How an image belongs to a concept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reference,
    Negative,
}

/// One concept as queries see it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: ConceptId,
    pub name: String,
    pub aliases: Vec<String>,
    /// The mean stability of its reference images (see [`Catalog::stability`]); `None` when
    /// the encoder keys no crops or no reference image has keys yet.
    pub stability: Option<f32>,
}

/// A tenant's concepts at one memory version.
#[derive(Debug, Default)]
pub struct Catalog {
    version: u64,
    pub concepts: Vec<Entry>,
    /// Image -> (index into `concepts`, role), usually one pair.
    by_image: HashMap<ImageId, Vec<(usize, Role)>>,
    /// The encoder the stabilities were measured with (none: no encoder could be loaded).
    encoder: Option<String>,
    /// Reference image -> its stability under `encoder`.
    image_stability: HashMap<ImageId, f32>,
    /// False when some reference image had no keys yet for `encoder` (they were still being
    /// computed): the next query reads the catalog again. (Not "has a stability": an image too
    /// small for crop keys never has one, and must not make every query re-read.)
    complete: bool,
}

impl Catalog {
    /// The concepts that use `image`, with the role it plays for each.
    pub fn owners(&self, image: &ImageId) -> &[(usize, Role)] {
        self.by_image.get(image).map_or(&[], Vec::as_slice)
    }

    /// (id, name, aliases) of every concept, for [`crate::retrieve::mentions`].
    pub fn names(&self) -> Vec<(ConceptId, String, Vec<String>)> {
        self.concepts
            .iter()
            .map(|c| (c.id.clone(), c.name.clone(), c.aliases.clone()))
            .collect()
    }

    /// A reference image's *stability*: the mean cosine similarity between its whole-image
    /// key and the keys of its centred crops (augmented copies of itself). A concept whose
    /// photos barely move under cropping scores high against its own new photos, one whose
    /// embedding drifts scores lower; the decision shifts each concept's floor by it.
    /// `None` without crop keys.
    pub fn stability(keys: &[rap_memory::KeyEntry]) -> Option<f32> {
        let whole = keys
            .iter()
            .find(|k| k.region.source == RegionSource::Whole)?;
        let crops: Vec<f32> = keys
            .iter()
            .filter(|k| k.region.source != RegionSource::Whole)
            .map(|k| whole.embedding.cosine(&k.embedding))
            .collect();
        (!crops.is_empty()).then(|| crops.iter().sum::<f32>() / crops.len() as f32)
    }

    fn read(
        engine: &Engine,
        tenant: &Tenant,
        version: u64,
        previous: Option<&Catalog>,
    ) -> Result<Catalog> {
        let concepts = engine.store().concepts(tenant)?;
        let mut by_image: HashMap<ImageId, Vec<(usize, Role)>> = HashMap::new();
        for (i, c) in concepts.iter().enumerate() {
            for image in &c.images {
                by_image
                    .entry(image.id.clone())
                    .or_default()
                    .push((i, Role::Reference));
            }
            for image in &c.negatives {
                by_image
                    .entry(image.id.clone())
                    .or_default()
                    .push((i, Role::Negative));
            }
        }
        // Without an encoder (a text-only engine) there are no keys and no stabilities.
        let encoder = engine.encoder_for(tenant).ok().map(|e| e.info().id.clone());
        let (image_stability, keyed) = match &encoder {
            Some(encoder) => {
                let references: HashSet<&ImageId> = concepts
                    .iter()
                    .flat_map(|c| &c.images)
                    .map(|i| &i.id)
                    .collect();
                let known = previous
                    .filter(|p| p.encoder.as_ref() == Some(encoder))
                    .map(|p| &p.image_stability);
                image_stabilities(engine, tenant, encoder, &references, known)?
            }
            None => (HashMap::new(), HashSet::new()),
        };
        let complete = encoder.is_none()
            || concepts
                .iter()
                .flat_map(|c| &c.images)
                .all(|i| keyed.contains(&i.id));
        let entries = concepts
            .into_iter()
            .map(|c| {
                let measured: Vec<f32> = c
                    .images
                    .iter()
                    .filter_map(|i| image_stability.get(&i.id).copied())
                    .collect();
                Entry {
                    stability: (!measured.is_empty())
                        .then(|| measured.iter().sum::<f32>() / measured.len() as f32),
                    id: c.id,
                    name: c.name,
                    aliases: c.aliases,
                }
            })
            .collect();
        Ok(Catalog {
            version,
            concepts: entries,
            by_image,
            encoder,
            image_stability,
            complete,
        })
    }
}

/// The stability of every reference image that has keys for `encoder`: carried over from
/// `known` where measured before (an image's bytes and keys never change), else computed from
/// its keys, read in one query. Also gives the reference images that have any key.
fn image_stabilities(
    engine: &Engine,
    tenant: &Tenant,
    encoder: &str,
    references: &HashSet<&ImageId>,
    known: Option<&HashMap<ImageId, f32>>,
) -> Result<(HashMap<ImageId, f32>, HashSet<ImageId>)> {
    let mut out = HashMap::new();
    let mut keyed = HashSet::new();
    let mut wanted: Vec<u64> = Vec::new();
    for location in engine.store().key_locations(tenant, encoder)? {
        if !references.contains(&location.image) {
            continue;
        }
        keyed.insert(location.image.clone());
        match known.and_then(|k| k.get(&location.image)) {
            Some(&s) => {
                out.insert(location.image, s);
            }
            None => wanted.push(location.key),
        }
    }
    let mut keys_of: HashMap<ImageId, Vec<rap_memory::KeyEntry>> = HashMap::new();
    for key in engine.store().keys_by_id(tenant, encoder, &wanted)? {
        keys_of.entry(key.image.clone()).or_default().push(key);
    }
    for (image, keys) in keys_of {
        if let Some(s) = Catalog::stability(&keys) {
            out.insert(image, s);
        }
    }
    Ok((out, keyed))
}

impl Engine {
    /// Each concept's name and stability (see [`Catalog::stability`]), as the decision uses
    /// them now.
    pub fn stabilities(&self, tenant: &Tenant) -> Result<Vec<(String, Option<f32>)>> {
        Ok(self
            .catalog(tenant)?
            .concepts
            .iter()
            .map(|c| (c.name.clone(), c.stability))
            .collect())
    }

    /// The tenant's [`Catalog`], read again only when its memory version moved.
    pub(crate) fn catalog(&self, tenant: &Tenant) -> Result<Arc<Catalog>> {
        // The version is read before the concepts: an edit in between makes the catalog newer
        // than its version says, so the next query reads it again (never the other way round).
        let version = self.store().memory_version(tenant)?;
        {
            let cached = self
                .catalogs
                .lock()
                .map_err(|_| Error::storage("catalog lock poisoned"))?;
            if let Some(c) = cached
                .get(tenant)
                .filter(|c| c.version == version && c.complete)
            {
                return Ok(c.clone());
            }
        }
        let previous = self
            .catalogs
            .lock()
            .map_err(|_| Error::storage("catalog lock poisoned"))?
            .get(tenant)
            .cloned();
        let fresh = Arc::new(Catalog::read(self, tenant, version, previous.as_deref())?);
        self.catalogs
            .lock()
            .map_err(|_| Error::storage("catalog lock poisoned"))?
            .insert(tenant.clone(), fresh.clone());
        Ok(fresh)
    }
}
