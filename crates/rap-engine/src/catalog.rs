//! What a query needs to know about a tenant's concepts, kept in memory: each concept's name
//! and aliases (to find mentions in text) and which concept each stored image belongs to, as
//! a reference or as a negative example (to turn matched keys into concepts).
//!
//! A query asks the store one cheap question, the tenant's memory version
//! ([`rap_memory::ConceptStore::memory_version`], raised in the transaction of every change of
//! its concepts); only when that moved is the catalog read again. So a query costs the same at
//! 10 concepts as at 10,000, an edit counts at the very next query, and every process on a
//! shared store (PostgreSQL replicas) sees every other process's edits.

use crate::Engine;
use rap_core::{ConceptId, Error, ImageId, Result, Tenant};
use std::collections::HashMap;
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
}

/// A tenant's concepts at one memory version.
#[derive(Debug, Default)]
pub struct Catalog {
    version: u64,
    pub concepts: Vec<Entry>,
    /// Image -> (index into `concepts`, role), usually one pair.
    by_image: HashMap<ImageId, Vec<(usize, Role)>>,
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

    fn read(engine: &Engine, tenant: &Tenant, version: u64) -> Result<Catalog> {
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
        Ok(Catalog {
            version,
            concepts: concepts
                .into_iter()
                .map(|c| Entry {
                    id: c.id,
                    name: c.name,
                    aliases: c.aliases,
                })
                .collect(),
            by_image,
        })
    }
}

impl Engine {
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
            if let Some(c) = cached.get(tenant).filter(|c| c.version == version) {
                return Ok(c.clone());
            }
        }
        let fresh = Arc::new(Catalog::read(self, tenant, version)?);
        self.catalogs
            .lock()
            .map_err(|_| Error::storage("catalog lock poisoned"))?
            .insert(tenant.clone(), fresh.clone());
        Ok(fresh)
    }
}
