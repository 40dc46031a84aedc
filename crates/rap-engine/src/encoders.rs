//! Which encoder a memory's keys come from, switching to another one, and search by words.
//!
//! Each tenant's memory records the encoder its keys were made with (name and embedding-space
//! id) in the memory itself: the tenant setting [`ENCODERS_SETTING`] of the store, a
//! [`TenantEncoders`] as JSON. So every process on one store (replicas on one PostgreSQL
//! database) sees the same choice, and `rap migrate` carries it with the memory. Without a
//! record a memory uses the installed default encoder, as before. Queries always embed with the memory's encoder, and if that
//! name now loads as another embedding space (its files changed), the query fails with an error
//! saying so: keys of one space are never scored against queries of another.
//!
//! [`Engine::reindex_with`] switches a memory to another encoder: it records the new one as
//! *pending*, embeds every reference image with it (one image per transaction, so an
//! interrupted run resumes where it stopped), and only when every image has its new key makes
//! it the memory's encoder. Until then queries keep using the old encoder and its keys, which
//! stay in the store (switching back is then free).
//!
//! A record is changed by read, change, swap ([`ConceptStore::swap_tenant_setting`]), again
//! when another process changed it in between, so no process loses another's change.
//!
//! Earlier versions kept the records in `DATA_DIR/encoders.json` ([`EncoderSettings`]):
//! [`migrate_encoders_file`], which [`Engine::open`] runs, moves them into the store (each
//! tenant's record, unless the store already has one for it) and renames the file
//! `encoders.json.migrated`.

use crate::Engine;
use rap_core::{ConceptId, Error, ImageEncoder, Result, Tenant};
use rap_memory::ConceptStore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Loads an image encoder by name (or path); used for encoders other than the default.
pub type EncoderResolver = Box<dyn Fn(&str) -> Result<Arc<dyn ImageEncoder>> + Send + Sync>;

/// The file in the data dir where earlier versions kept the records (see
/// [`migrate_encoders_file`]).
pub const SETTINGS_FILE: &str = "encoders.json";

/// The tenant setting holding a memory's [`TenantEncoders`] (as JSON).
pub const ENCODERS_SETTING: &str = "encoders";

/// How many times a record update is tried against other processes' updates.
const UPDATE_TRIES: usize = 16;

/// An encoder by the name it is loaded by and the id of its embedding space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderChoice {
    pub name: String,
    pub id: String,
}

/// One tenant's encoders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantEncoders {
    /// The encoder the memory's keys come from; `None`: the installed default.
    pub active: Option<EncoderChoice>,
    /// A switch in progress (`rap reindex --encoder`), not yet complete.
    pub pending: Option<EncoderChoice>,
}

/// Every tenant's record: the format of `DATA_DIR/encoders.json` of earlier versions, and what
/// [`Engine::encoder_settings`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderSettings {
    pub tenants: BTreeMap<String, TenantEncoders>,
}

/// What [`Engine::reindex_with`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReindexReport {
    pub encoder: EncoderChoice,
    /// Images embedded by this run.
    pub embedded: usize,
    /// Whether the memory now uses this encoder.
    pub active: bool,
    /// The encoder it used before, if it changed.
    pub previous: Option<EncoderChoice>,
}

/// A concept found by words (text embedding against its image keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordHit {
    pub id: ConceptId,
    pub name: String,
    /// Cosine similarity of the text to the concept's best-matching reference image.
    pub score: f32,
}

/// A tenant's record as stored (`None`: none) and as read (the default when none).
fn read_record(
    store: &dyn ConceptStore,
    tenant: &Tenant,
) -> Result<(Option<String>, TenantEncoders)> {
    let raw = store.tenant_setting(tenant, ENCODERS_SETTING)?;
    let record = match &raw {
        None => TenantEncoders::default(),
        Some(json) => serde_json::from_str(json).map_err(|e| {
            Error::storage(format!(
                "the encoder record of tenant {tenant} (setting {ENCODERS_SETTING}): {e}"
            ))
        })?,
    };
    Ok((raw, record))
}

/// A record as stored; the default (nothing recorded) is no setting at all.
fn encode_record(record: &TenantEncoders) -> Result<Option<String>> {
    if *record == TenantEncoders::default() {
        return Ok(None);
    }
    serde_json::to_string(record)
        .map(Some)
        .map_err(|e| Error::storage(format!("encoder record: {e}")))
}

/// Moves the records of `DATA_DIR/encoders.json` (earlier versions' home for them) into
/// `store`: each tenant's record is written unless the store already holds one for that
/// tenant, then the file is renamed `encoders.json.migrated`. Returns the tenants whose
/// record was written; without the file, does nothing. A file that cannot be read is an error
/// naming it (nothing is written); one that cannot be renamed is left, with a warning (moving
/// it again later writes nothing twice).
pub fn migrate_encoders_file(data_dir: &Path, store: &dyn ConceptStore) -> Result<Vec<Tenant>> {
    let path = data_dir.join(SETTINGS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let file: EncoderSettings = serde_json::from_slice(&bytes)
        .map_err(|e| Error::storage(format!("{}: {e}", path.display())))?;
    let mut records = Vec::with_capacity(file.tenants.len());
    for (name, record) in &file.tenants {
        let tenant = Tenant::new(name.as_str())
            .map_err(|e| Error::storage(format!("{}: {e}", path.display())))?;
        if let Some(value) = encode_record(record)? {
            records.push((tenant, value));
        }
    }
    let mut written = Vec::new();
    for (tenant, value) in records {
        if store.swap_tenant_setting(&tenant, ENCODERS_SETTING, None, Some(&value))? {
            written.push(tenant);
        }
    }
    let done = data_dir.join(format!("{SETTINGS_FILE}.migrated"));
    match std::fs::rename(&path, &done) {
        Ok(()) => tracing::info!(
            tenants = written.len(),
            "moved the encoder records of {} into the memory (the file is now {})",
            path.display(),
            done.display()
        ),
        Err(e) => tracing::warn!(
            "moved the encoder records of {} into the memory, but could not rename it: {e}",
            path.display()
        ),
    }
    Ok(written)
}

impl Engine {
    /// The record of every tenant that holds concepts and has one.
    pub fn encoder_settings(&self) -> Result<EncoderSettings> {
        let mut tenants = BTreeMap::new();
        for tenant in self.store().tenants()? {
            let (raw, record) = read_record(self.store(), &tenant)?;
            if raw.is_some() {
                tenants.insert(tenant.to_string(), record);
            }
        }
        Ok(EncoderSettings { tenants })
    }

    /// Changes the tenant's record by `f` (read, change, swap; again if another process
    /// changed it meanwhile) and returns it as written.
    fn update_settings(
        &self,
        tenant: &Tenant,
        f: impl Fn(&mut TenantEncoders),
    ) -> Result<TenantEncoders> {
        let store = self.store();
        for _ in 0..UPDATE_TRIES {
            let (raw, mut record) = read_record(store, tenant)?;
            f(&mut record);
            let value = encode_record(&record)?;
            if store.swap_tenant_setting(
                tenant,
                ENCODERS_SETTING,
                raw.as_deref(),
                value.as_deref(),
            )? {
                return Ok(record);
            }
        }
        Err(Error::Conflict(format!(
            "the encoder record of tenant {tenant} kept changing while this process updated it \
             ({UPDATE_TRIES} tries); try again"
        )))
    }

    /// The tenant's encoders (the default when nothing is recorded).
    pub fn tenant_encoders(&self, tenant: &Tenant) -> Result<TenantEncoders> {
        Ok(read_record(self.store(), tenant)?.1)
    }

    /// Loads an encoder by name through the resolver (cached per name).
    pub fn named_encoder(&self, name: &str) -> Result<Arc<dyn ImageEncoder>> {
        if let Some(e) = self
            .named
            .lock()
            .map_err(|_| Error::Model("encoder cache lock poisoned".into()))?
            .get(name)
        {
            return Ok(e.clone());
        }
        let resolver = self.resolver.as_ref().ok_or_else(|| {
            Error::Model(format!(
                "this engine cannot load encoder {name}: it only has the default encoder"
            ))
        })?;
        let enc = resolver(name)?;
        self.named
            .lock()
            .map_err(|_| Error::Model("encoder cache lock poisoned".into()))?
            .insert(name.to_string(), enc.clone());
        Ok(enc)
    }

    /// The encoder the tenant's memory uses: the recorded one, else the installed default. A
    /// recorded encoder that now loads as another embedding space is an error, never a silent
    /// mismatch.
    pub fn encoder_for(&self, tenant: &Tenant) -> Result<Arc<dyn ImageEncoder>> {
        match self.tenant_encoders(tenant)?.active {
            None => self.require_encoder(),
            Some(choice) => {
                let enc = self.named_encoder(&choice.name)?;
                if enc.info().id != choice.id {
                    return Err(Error::Model(format!(
                        "the memory of tenant {tenant} is keyed by encoder {} ({}), but {} now \
                         loads as {}: its files changed; run `rap reindex --encoder {}` to \
                         re-embed the memory with it",
                        choice.name,
                        choice.id,
                        choice.name,
                        enc.info().id,
                        choice.name
                    )));
                }
                Ok(enc)
            }
        }
    }

    /// Re-embeds every reference image of the tenant with encoder `name` and, once every image
    /// has its key, makes it the memory's encoder. Resumable: run again after an interruption
    /// and only the missing keys are computed. `progress(done, total)` after each image.
    pub fn reindex_with(
        &self,
        tenant: &Tenant,
        name: &str,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<ReindexReport> {
        let enc = self.named_encoder(name)?;
        let choice = EncoderChoice {
            name: name.to_string(),
            id: enc.info().id.clone(),
        };
        let before = self.tenant_encoders(tenant)?;
        let previous = match &before.active {
            Some(a) => Some(a.clone()),
            None => self.encoder().ok().flatten().map(|e| EncoderChoice {
                name: "default".to_string(),
                id: e.info().id.clone(),
            }),
        };
        if before.active.as_ref() != Some(&choice) {
            self.update_settings(tenant, |t| t.pending = Some(choice.clone()))?;
        }
        let embedded = self.compute_keys(tenant, enc.as_ref(), progress)?;
        let missing = self.store().images_without_keys(tenant, &choice.id)?;
        if !missing.is_empty() {
            // Images added meanwhile: the next run picks them up.
            return Ok(ReindexReport {
                encoder: choice,
                embedded,
                active: false,
                previous,
            });
        }
        self.update_settings(tenant, |t| {
            t.active = Some(choice.clone());
            t.pending = None;
        })?;
        let changed = previous.as_ref().map(|p| &p.id) != Some(&choice.id);
        Ok(ReindexReport {
            encoder: choice,
            embedded,
            active: true,
            previous: if changed { previous } else { None },
        })
    }

    /// Finds concepts by words: the text's embedding (CLIP, SigLIP: the same space as images)
    /// against every reference image key, best image per concept, best first.
    pub fn search_by_words(
        &self,
        tenant: &Tenant,
        text: &str,
        top_k: usize,
    ) -> Result<Vec<WordHit>> {
        if text.trim().is_empty() {
            return Err(Error::invalid("nothing to search for: the text is empty"));
        }
        let enc = self.encoder_for(tenant)?;
        if !enc.has_text() {
            return Err(Error::Model(format!(
                "the memory's encoder {} has no text tower, so it cannot be searched by words; \
                 switch it to a CLIP or SigLIP model with `rap reindex --encoder NAME`",
                enc.info().id
            )));
        }
        let query = enc
            .embed_texts(&[text])?
            .pop()
            .ok_or_else(|| Error::Model("encoder returned no text embedding".into()))?;
        let mut best: HashMap<rap_core::ImageId, f32> = HashMap::new();
        let found =
            self.nearest_images(tenant, std::slice::from_ref(&query), (top_k * 8).max(16))?;
        for (score, image) in found.into_iter().flatten() {
            let e = best.entry(image).or_insert(f32::NEG_INFINITY);
            *e = e.max(score);
        }
        let mut by_concept: HashMap<ConceptId, f32> = HashMap::new();
        for (image, score) in best {
            for id in self.store().concepts_with_image(tenant, &image)? {
                let e = by_concept.entry(id).or_insert(f32::NEG_INFINITY);
                *e = e.max(score);
            }
        }
        let mut hits = Vec::with_capacity(by_concept.len());
        for (id, score) in by_concept {
            let name = self.store().concept_by_id(tenant, &id)?.name;
            hits.push(WordHit { id, name, score });
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(top_k);
        Ok(hits)
    }
}
