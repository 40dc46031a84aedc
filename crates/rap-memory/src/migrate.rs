//! Moving a whole memory from one backend to another (`rap migrate`), verified.
//!
//! [`migrate`] copies every tenant of a source [`ConceptStore`] into a target: concepts with
//! their ids, names, aliases, info, category and times; the bytes of every image; the keys of
//! every encoder (new key ids: each store numbers its own). Each tenant is written by one
//! [`ConceptStore::import_tenant`] call, so it arrives completely or not at all. A target that
//! already holds any of the tenants is refused before anything is written, unless
//! [`MigrateOptions::replace`]. After each tenant both sides are summarised ([`summarize`]:
//! counts, and sha256 checksums over the concepts, over the image bytes as read back, and over
//! each encoder's keys) and must agree. The server API keys of the migrated tenants go along
//! (every key when all tenants are migrated, also those of tenants without concepts), as the
//! source stored them: id, tenant, hash and times, revoked ones included. So do each migrated
//! tenant's settings ([`ConceptStore::tenant_settings`]: the encoder its keys come from...),
//! checked equal on both sides like the rest.

use crate::api_keys::{plan_import, StoredApiKey};
use crate::store::{ConceptStore, ImageInput, TenantDump};
use rap_core::{Concept, ConceptImage, Error, ImageId, NewConcept, Result, Tenant};
use rap_image::ImageMeta;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};

/// What to migrate and how.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    /// Replace whatever the target holds for a tenant (otherwise such a target is refused).
    pub replace: bool,
    /// Only these tenants (all of the source's when empty).
    pub tenants: Vec<Tenant>,
}

/// The keys of one encoder in a tenant: how many, and a checksum over them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EncoderSummary {
    pub encoder: String,
    pub keys: u64,
    /// sha256 over every key's (image, region, little-endian f32 vector), in a fixed order
    /// independent of key ids.
    pub checksum: String,
}

/// A tenant's memory in counts and checksums, comparable across backends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantSummary {
    pub tenant: String,
    pub concepts: u64,
    /// sha256 over every concept's id, name, aliases, category, info, times and image ids.
    pub concepts_checksum: String,
    pub images: u64,
    /// Total bytes of the images.
    pub image_bytes: u64,
    /// sha256 over the sorted image ids, each checked against the sha256 of its bytes as read.
    pub images_checksum: String,
    pub encoders: Vec<EncoderSummary>,
}

/// What [`migrate`] did: per tenant, the source's summary (equal to the target's).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrateReport {
    pub tenants: Vec<TenantSummary>,
    /// Server API keys copied (revoked ones included).
    pub api_keys: usize,
}

fn hex_digest(h: Sha256) -> String {
    hex::encode(h.finalize())
}

/// Feeds a length-prefixed field, so field boundaries cannot be forged by their contents.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Counts and checksums of a tenant's memory (reads every image's bytes and every key).
pub fn summarize(store: &dyn ConceptStore, tenant: &Tenant) -> Result<TenantSummary> {
    let mut concepts = store.concepts(tenant)?;
    concepts.sort_by(|a, b| a.id.0.cmp(&b.id.0));
    let mut h = Sha256::new();
    let mut image_ids = std::collections::BTreeSet::new();
    for c in &concepts {
        field(&mut h, c.id.0.as_bytes());
        field(&mut h, c.name.as_bytes());
        let mut aliases: Vec<&str> = c.aliases.iter().map(String::as_str).collect();
        aliases.sort_unstable();
        field(&mut h, aliases.join("\n").as_bytes());
        field(&mut h, c.category.as_bytes());
        field(&mut h, c.info.as_bytes());
        h.update(c.created_at.to_le_bytes());
        h.update(c.updated_at.to_le_bytes());
        for image in &c.images {
            field(&mut h, image.id.0.as_bytes());
            image_ids.insert(image.id.clone());
        }
        if !c.negatives.is_empty() {
            // Only when there are any, so memories without negatives keep their checksums.
            field(&mut h, b"negatives");
            for image in &c.negatives {
                field(&mut h, image.id.0.as_bytes());
                image_ids.insert(image.id.clone());
            }
        }
    }
    let concepts_checksum = hex_digest(h);

    let mut h = Sha256::new();
    let mut image_bytes = 0u64;
    for id in &image_ids {
        let bytes = store.image_bytes(tenant, id)?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != id.0 {
            return Err(Error::storage(format!(
                "tenant {tenant}: image {} reads back as bytes with sha256 {actual}",
                id.0
            )));
        }
        image_bytes += bytes.len() as u64;
        field(&mut h, id.0.as_bytes());
    }
    let images_checksum = hex_digest(h);

    let mut encoders = Vec::new();
    for (encoder, _) in store.encoders(tenant)? {
        let mut keys: Vec<(String, String, Vec<u8>)> = store
            .keys(tenant, &encoder)?
            .into_iter()
            .map(|k| {
                let region = serde_json::to_string(&k.region)
                    .map_err(|e| Error::storage(format!("region of key {}: {e}", k.key)))?;
                Ok((k.image.0, region, k.embedding.to_le_bytes()))
            })
            .collect::<Result<_>>()?;
        keys.sort();
        let mut h = Sha256::new();
        for (image, region, vector) in &keys {
            field(&mut h, image.as_bytes());
            field(&mut h, region.as_bytes());
            field(&mut h, vector);
        }
        encoders.push(EncoderSummary {
            encoder,
            keys: keys.len() as u64,
            checksum: hex_digest(h),
        });
    }
    encoders.sort_by(|a, b| a.encoder.cmp(&b.encoder));
    Ok(TenantSummary {
        tenant: tenant.to_string(),
        concepts: concepts.len() as u64,
        concepts_checksum,
        images: image_ids.len() as u64,
        image_bytes,
        images_checksum,
        encoders,
    })
}

/// Reads a tenant's whole memory (concepts, image bytes, every encoder's keys). The image
/// bytes are checked against their content addresses.
pub fn export_tenant(store: &dyn ConceptStore, tenant: &Tenant) -> Result<TenantDump> {
    let concepts = store.concepts(tenant)?;
    let mut images: BTreeMap<ImageId, ImageInput> = BTreeMap::new();
    for c in &concepts {
        for image in c.images.iter().chain(&c.negatives) {
            if images.contains_key(&image.id) {
                continue;
            }
            let bytes = store.image_bytes(tenant, &image.id)?;
            if hex::encode(Sha256::digest(&bytes)) != image.id.0 {
                return Err(Error::storage(format!(
                    "tenant {tenant}: the stored bytes of image {} do not have that sha256",
                    image.id.0
                )));
            }
            let input = ImageInput {
                id: image.id.clone(),
                bytes: bytes.into(),
                meta: ImageMeta {
                    format: image.format.clone(),
                    width: image.width,
                    height: image.height,
                },
            };
            images.insert(image.id.clone(), input);
        }
    }
    let mut keys = Vec::new();
    for (encoder, _) in store.encoders(tenant)? {
        let entries = store
            .keys(tenant, &encoder)?
            .into_iter()
            .map(|k| (k.image, k.region, k.embedding))
            .collect();
        keys.push((encoder, entries));
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(TenantDump {
        concepts,
        images: images.into_values().collect(),
        keys,
        settings: store.tenant_settings(tenant)?,
    })
}

/// Checks a dump before a store imports it, the same for every backend: every key is of an
/// image some concept uses, no encoder has two keys for one (image, region), and every setting
/// is one a store keeps ([`crate::rules::check_setting`]). Returns the dump's images by id,
/// for [`concept_parts`].
pub fn check_dump(dump: &TenantDump) -> Result<HashMap<&ImageId, &ImageInput>> {
    for (key, value) in &dump.settings {
        crate::rules::check_setting(key, Some(value))?;
    }
    let images: HashMap<&ImageId, &ImageInput> = dump.images.iter().map(|i| (&i.id, i)).collect();
    let used: HashSet<&ImageId> = dump
        .concepts
        .iter()
        .flat_map(|c| c.images.iter().chain(&c.negatives).map(|i| &i.id))
        .collect();
    for (encoder, keys) in &dump.keys {
        let mut seen = HashSet::with_capacity(keys.len());
        for (image, region, _) in keys {
            if !used.contains(image) {
                return Err(Error::invalid(format!(
                    "a key of encoder {encoder} is of image {}, which no concept uses",
                    image.0
                )));
            }
            // Stores tell regions apart by their JSON text.
            let region =
                serde_json::to_string(region).map_err(|e| Error::invalid(e.to_string()))?;
            if !seen.insert((image, region)) {
                return Err(Error::invalid(format!(
                    "encoder {encoder} has two keys for the same region of image {}",
                    image.0
                )));
            }
        }
    }
    Ok(images)
}

/// A dumped concept as the fields a store inserts, its reference images in order and its
/// negative examples in order (for the stores' [`ConceptStore::import_tenant`]); an image
/// missing from the dump is an error.
pub fn concept_parts<'a>(
    concept: &Concept,
    images: &HashMap<&ImageId, &'a ImageInput>,
) -> Result<ConceptParts<'a>> {
    let find = |i: &ConceptImage| {
        images.get(&i.id).copied().ok_or_else(|| {
            Error::invalid(format!(
                "concept {:?}: image {} is not among the dump's images",
                concept.name, i.id.0
            ))
        })
    };
    let refs = concept
        .images
        .iter()
        .map(find)
        .collect::<Result<Vec<_>>>()?;
    let negatives = concept
        .negatives
        .iter()
        .map(find)
        .collect::<Result<Vec<_>>>()?;
    if refs.is_empty() {
        return Err(Error::invalid(format!(
            "concept {:?} has no reference image",
            concept.name
        )));
    }
    Ok(ConceptParts {
        new: NewConcept {
            name: concept.name.clone(),
            aliases: concept.aliases.clone(),
            category: concept.category.clone(),
            info: concept.info.clone(),
        },
        refs,
        negatives,
    })
}

/// What [`concept_parts`] gives a store to insert.
pub struct ConceptParts<'a> {
    pub new: NewConcept,
    pub refs: Vec<&'a ImageInput>,
    pub negatives: Vec<&'a ImageInput>,
}

/// Copies every tenant (or those of `options.tenants`) from `from` into `to`, one transaction
/// per tenant, and checks each against the source. Refuses, before writing anything, a target
/// that already holds one of the tenants (unless `options.replace`). On an error the tenants
/// before the failing one stay copied; the error names the failing one.
pub fn migrate(
    from: &dyn ConceptStore,
    to: &dyn ConceptStore,
    options: &MigrateOptions,
) -> Result<MigrateReport> {
    let tenants = if options.tenants.is_empty() {
        from.tenants()?
    } else {
        options.tenants.clone()
    };
    let api_keys = api_keys_to_copy(from, to, options)?;
    if !options.replace {
        let mut held = Vec::new();
        for tenant in &tenants {
            let stats = to.stats(tenant)?;
            if stats.concepts > 0 || stats.images > 0 {
                held.push(format!("{tenant} ({} concepts)", stats.concepts));
            }
        }
        if !held.is_empty() {
            return Err(Error::Conflict(format!(
                "the target already holds a memory for tenant(s) {}; nothing was copied \
                 (replace them with --replace)",
                held.join(", ")
            )));
        }
    }
    let mut report = MigrateReport {
        tenants: Vec::new(),
        api_keys: 0,
    };
    for tenant in &tenants {
        let done = || {
            if report.tenants.is_empty() {
                "no tenant was copied".to_owned()
            } else {
                let names: Vec<&str> = report.tenants.iter().map(|t| t.tenant.as_str()).collect();
                format!("tenants copied before it: {}", names.join(", "))
            }
        };
        let step = || -> Result<TenantSummary> {
            let dump = export_tenant(from, tenant)?;
            let source = summarize(from, tenant)?;
            to.import_tenant(tenant, &dump, options.replace)?;
            let target = summarize(to, tenant)?;
            if target != source {
                return Err(Error::storage(format!(
                    "verification failed: source {source:?}, target {target:?}"
                )));
            }
            let settings = to.tenant_settings(tenant)?;
            if settings != dump.settings {
                return Err(Error::storage(format!(
                    "verification failed: the settings {:?} arrived as {:?}",
                    dump.settings, settings
                )));
            }
            Ok(source)
        };
        match step() {
            Ok(summary) => report.tenants.push(summary),
            Err(e) => {
                let msg = format!("tenant {tenant}: {e} ({})", done());
                return Err(match e {
                    Error::Conflict(_) => Error::Conflict(msg),
                    _ => Error::storage(msg),
                });
            }
        }
    }
    if let Some(target) = to.api_key_store().filter(|_| !api_keys.is_empty()) {
        let copied = || {
            format!(
                "after copying every tenant ({}); the API keys can be copied again by rerunning \
                 with --replace",
                report.tenants.len()
            )
        };
        target
            .import_api_keys(&api_keys, options.replace)
            .map_err(|e| Error::storage(format!("API keys: {e} ({})", copied())))?;
        let held = target.export_api_keys()?;
        if let Some(missing) = api_keys.iter().find(|k| !held.contains(k)) {
            return Err(Error::storage(format!(
                "verification failed: API key {} is not in the target as in the source ({})",
                missing.info.id,
                copied()
            )));
        }
        report.api_keys = api_keys.len();
    }
    Ok(report)
}

/// The source's API keys that go with the migrated tenants, checked against the target
/// before anything is copied: a target that keeps no keys, or holds another key under one of
/// their ids (without `replace`), is refused.
fn api_keys_to_copy(
    from: &dyn ConceptStore,
    to: &dyn ConceptStore,
    options: &MigrateOptions,
) -> Result<Vec<StoredApiKey>> {
    let Some(source) = from.api_key_store() else {
        return Ok(Vec::new());
    };
    let keys: Vec<StoredApiKey> = source
        .export_api_keys()?
        .into_iter()
        .filter(|k| options.tenants.is_empty() || options.tenants.contains(&k.info.tenant))
        .collect();
    if keys.is_empty() {
        return Ok(keys);
    }
    let target = to.api_key_store().ok_or_else(|| {
        Error::invalid(format!(
            "the source has {} API key(s) and the target keeps none; nothing was copied",
            keys.len()
        ))
    })?;
    plan_import(&keys, target.export_api_keys()?, options.replace).map_err(|e| {
        Error::Conflict(format!(
            "{e}; nothing was copied (replace it with --replace)"
        ))
    })?;
    Ok(keys)
}
