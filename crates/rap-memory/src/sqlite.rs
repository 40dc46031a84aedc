//! The embedded default store: one SQLite file (WAL, `synchronous = FULL`) in the data dir.
//!
//! # On-disk format (schema version 5) and its invariants
//! - `concepts(id, tenant, name, category, info, created_at, updated_at)`: one row a concept.
//! - `names(tenant, key, concept_id, display, is_alias)`: the concept's name and each alias;
//!   `key` is the lowercase form, and `(tenant, key)` is the primary key, so a name or alias
//!   is unique across both names and aliases of a tenant - the database enforces it.
//! - `blobs(tenant, sha256, data, format, width, height)`: image bytes, once per tenant and
//!   content (sha256 of the bytes). A blob exists exactly while some `concept_images` row of
//!   its tenant refers to it: whoever deletes the last reference deletes the blob and its
//!   embeddings in the same transaction.
//! - `concept_images(concept_id, tenant, sha256, position, negative)`: a concept's reference
//!   images in order (every concept has at least one) and, with `negative = 1` (since version
//!   4), its negative examples; one image is never both for one concept.
//! - `embeddings(key, tenant, sha256, region, encoder, vector)`: keys per (image, region,
//!   encoder); `vector` is little-endian f32, unit length. `key` is never reused
//!   (AUTOINCREMENT), so an index entry can never point at a different embedding.
//! - `key_log(seq, tenant, encoder, key, op)`: every key added (`+`) or removed (`-`), in
//!   commit order; indexes catch up from it instead of rebuilding.
//! - `api_keys(id, tenant, hash, created_at, revoked_at)` (since version 2): server API keys;
//!   `hash` is the sha256 of the whole key (the key itself is never stored), unique; a row
//!   with `revoked_at` set authenticates nothing. Keys are the one table not scoped to a
//!   tenant: a key is how a request gets its tenant.
//! - `tenant_settings(tenant, key, value)` (since version 3): a tenant's settings (such as the
//!   encoder its keys come from), one row a key; deleted with the tenant's memory only by an
//!   import that replaces it.
//!
//! - `memory_versions(tenant, version)` (since version 4): raised by every transaction that
//!   changes a tenant's concepts ([`ConceptStore::memory_version`]).
//!
//! - `library_photos`, `library_regions`, `library_roots` (since version 5): the photo library,
//!   described in [`library`] (this file's child module, which reads and writes them).
//!
//! Versions: `PRAGMA user_version`. A version-1, -2, -3 or -4 file is upgraded in place on open (one
//! transaction adding what it lacks); a file from a newer `rap` is refused.
//!
//! What may be written (names, aliases, images, edits) is decided by [`crate::rules`]; this
//! file only reads what a rule needs and writes the plan.
//!
//! Every public method runs in one `IMMEDIATE` transaction: all or nothing. Tenants are a
//! column of every table and every statement filters by it.

use crate::api_keys::{
    plan_import, ApiKeyInfo, ApiKeyStore, ImportAction, NewApiKey, StoredApiKey,
};
use crate::rules::{
    self, check_setting, lookup_key, now_ms, parse_region, plan_add, plan_edit, region_to_text,
    short_id, HeldName, NameClaim,
};
use crate::store::{
    ConceptEdit, ConceptStore, ImageInput, KeyChange, KeyEntry, KeyLocation, StoreStats, TenantDump,
};
use rap_core::{
    Concept, ConceptId, ConceptImage, Embedding, Error, ImageId, NewConcept, Region, Result, Tenant,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const SCHEMA_VERSION: i64 = 5;

mod library;

const SCHEMA: &str = "
CREATE TABLE concepts (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    info TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX concepts_by_tenant ON concepts(tenant, name);
CREATE TABLE names (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    concept_id TEXT NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
    display TEXT NOT NULL,
    is_alias INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX names_by_concept ON names(concept_id);
CREATE TABLE blobs (
    tenant TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    data BLOB NOT NULL,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    PRIMARY KEY (tenant, sha256)
);
CREATE TABLE concept_images (
    concept_id TEXT NOT NULL REFERENCES concepts(id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (concept_id, sha256),
    FOREIGN KEY (tenant, sha256) REFERENCES blobs(tenant, sha256)
);
CREATE INDEX concept_images_by_blob ON concept_images(tenant, sha256);
CREATE TABLE embeddings (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    region TEXT NOT NULL,
    encoder TEXT NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (tenant, sha256, region, encoder),
    FOREIGN KEY (tenant, sha256) REFERENCES blobs(tenant, sha256)
);
CREATE INDEX embeddings_by_encoder ON embeddings(tenant, encoder);
CREATE TABLE key_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    encoder TEXT NOT NULL,
    key INTEGER NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('+', '-'))
);
CREATE INDEX key_log_by_encoder ON key_log(tenant, encoder, seq);
";

/// Version 1 -> 2: API keys.
const SCHEMA_V2: &str = "
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
";

/// Version 3 -> 4: negative examples (a concept image with `negative = 1` is one) and each
/// tenant's memory version, which every change of its concepts raises (what processes that
/// keep the concepts in memory check before using them).
/// (The column is added only where it is missing: see [`SqliteStore::migrate`].)
const SCHEMA_V4: &str = "
CREATE TABLE IF NOT EXISTS memory_versions (
    tenant TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
";

/// Version 2 -> 3: tenant settings. (`IF NOT EXISTS`: a file made by this version and set
/// back to an older version number, as tests do, still upgrades.)
const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS tenant_settings (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
";

/// The SQLite-backed [`ConceptStore`].
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// SQLite's error as the crate's ([`rules::database_error`]).
fn db_err(e: rusqlite::Error) -> Error {
    let unique = matches!(
        &e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    );
    rules::database_error(e.to_string(), unique, e)
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let conn = Connection::open(&path)
            .map_err(|e| Error::storage_from(format_args!("cannot open {}", path.display()), e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(|e| Error::storage_from(format_args!("cannot open {}", path.display()), e))?;
        let store = SqliteStore {
            path,
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&self) -> Result<()> {
        self.write(|tx| {
            let version: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(db_err)?;
            match version {
                0..=4 => {
                    if version == 0 {
                        tx.execute_batch(SCHEMA).map_err(db_err)?;
                    }
                    if version <= 1 {
                        tx.execute_batch(SCHEMA_V2).map_err(db_err)?;
                    }
                    if version <= 2 {
                        tx.execute_batch(SCHEMA_V3).map_err(db_err)?;
                    }
                    let has_negative: bool = tx
                        .query_row(
                            "SELECT count(*) FROM pragma_table_info('concept_images')
                             WHERE name = 'negative'",
                            [],
                            |r| r.get(0),
                        )
                        .map_err(db_err)?;
                    if !has_negative {
                        tx.execute_batch(
                            "ALTER TABLE concept_images
                             ADD COLUMN negative INTEGER NOT NULL DEFAULT 0;",
                        )
                        .map_err(db_err)?;
                    }
                    tx.execute_batch(SCHEMA_V4).map_err(db_err)?;
                    tx.execute_batch(library::SCHEMA_V5).map_err(db_err)?;
                    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                        .map_err(db_err)?;
                    Ok(())
                }
                SCHEMA_VERSION => Ok(()),
                v => Err(Error::storage(format!(
                    "the memory was written by a newer rap (schema version {v}, this build knows {SCHEMA_VERSION}); upgrade rap"
                ))),
            }
        })
    }

    /// Runs `f` in an IMMEDIATE transaction, committing only when it succeeds.
    fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| Error::storage("store lock poisoned"))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    fn read<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| Error::storage("store lock poisoned"))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(db_err)?;
        f(&tx)
    }
}

// ---- helpers running inside a transaction ----

fn find_concept_id(tx: &Transaction, tenant: &Tenant, name_or_alias: &str) -> Result<ConceptId> {
    let key = lookup_key(name_or_alias)?;
    tx.query_row(
        "SELECT concept_id FROM names WHERE tenant = ?1 AND key = ?2",
        params![tenant.as_str(), key],
        |r| r.get::<_, String>(0),
    )
    .optional()
    .map_err(db_err)?
    .map(ConceptId)
    .ok_or_else(|| Error::not_found("concept", name_or_alias))
}

fn load_concept(tx: &Transaction, tenant: &Tenant, id: &ConceptId) -> Result<Concept> {
    let row = tx
        .query_row(
            "SELECT name, category, info, created_at, updated_at FROM concepts WHERE tenant = ?1 AND id = ?2",
            params![tenant.as_str(), id.0],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("concept", id.0.clone()))?;
    let mut stmt = tx
        .prepare_cached(
            "SELECT display FROM names WHERE concept_id = ?1 AND is_alias = 1 ORDER BY key",
        )
        .map_err(db_err)?;
    let aliases = stmt
        .query_map(params![id.0], |r| r.get::<_, String>(0))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    let mut stmt = tx
        .prepare_cached(
            "SELECT b.sha256, b.width, b.height, b.format, length(b.data), ci.negative
             FROM concept_images ci JOIN blobs b ON b.tenant = ci.tenant AND b.sha256 = ci.sha256
             WHERE ci.concept_id = ?1 ORDER BY ci.position",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![id.0], |r| {
            let image = ConceptImage {
                id: ImageId(r.get(0)?),
                width: r.get(1)?,
                height: r.get(2)?,
                format: r.get(3)?,
                bytes: r.get::<_, i64>(4)? as u64,
            };
            Ok((image, r.get::<_, bool>(5)?))
        })
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    let (negatives, images): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(_, neg)| *neg);
    let images = images.into_iter().map(|(i, _)| i).collect();
    let negatives = negatives.into_iter().map(|(i, _)| i).collect();
    let (name, category, info, created_at, updated_at) = row;
    Ok(Concept {
        id: id.clone(),
        name,
        aliases,
        category,
        info,
        images,
        negatives,
        created_at,
        updated_at,
    })
}

/// What [`rules::plan_add`] and [`rules::plan_edit`] need: every name and alias of `concept`
/// (if given) and whatever the tenant holds under `keys`.
fn held_names(
    tx: &Transaction,
    tenant: &Tenant,
    concept: Option<&ConceptId>,
    keys: &[String],
) -> Result<Vec<HeldName>> {
    let row = |r: &rusqlite::Row| {
        Ok(HeldName {
            key: r.get(0)?,
            concept: ConceptId(r.get(1)?),
            concept_name: r.get(2)?,
            is_alias: r.get(3)?,
        })
    };
    let mut held = Vec::new();
    if let Some(id) = concept {
        let mut stmt = tx
            .prepare_cached(
                "SELECT n.key, n.concept_id, c.name, n.is_alias FROM names n
                 JOIN concepts c ON c.id = n.concept_id WHERE n.concept_id = ?1",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![id.0], row)
            .map_err(db_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db_err)?;
        held.extend(rows);
    }
    let mut stmt = tx
        .prepare_cached(
            "SELECT n.key, n.concept_id, c.name, n.is_alias FROM names n
             JOIN concepts c ON c.id = n.concept_id WHERE n.tenant = ?1 AND n.key = ?2",
        )
        .map_err(db_err)?;
    for key in keys {
        if let Some(h) = stmt
            .query_row(params![tenant.as_str(), key], row)
            .optional()
            .map_err(db_err)?
        {
            held.push(h);
        }
    }
    Ok(held)
}

/// Writes a name or alias a plan claimed.
fn insert_name(tx: &Transaction, tenant: &Tenant, id: &ConceptId, claim: &NameClaim) -> Result<()> {
    tx.execute(
        "INSERT INTO names (tenant, key, concept_id, display, is_alias) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![tenant.as_str(), claim.key, id.0, claim.display, claim.is_alias],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Stores `image` (once per tenant) and attaches it to concept `id` as a reference image, or
/// as a negative example when `negative`.
fn attach_image(
    tx: &Transaction,
    tenant: &Tenant,
    id: &ConceptId,
    image: &ImageInput,
    position: i64,
    negative: bool,
) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO blobs (tenant, sha256, data, format, width, height) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            tenant.as_str(),
            image.id.0,
            &image.bytes[..],
            image.meta.format,
            image.meta.width,
            image.meta.height
        ],
    )
    .map_err(db_err)?;
    let inserted = tx
        .execute(
            "INSERT OR IGNORE INTO concept_images (concept_id, tenant, sha256, position, negative) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id.0, tenant.as_str(), image.id.0, position, negative],
        )
        .map_err(db_err)?;
    if inserted == 0 {
        let role = if negative {
            "a negative example"
        } else {
            "a reference image"
        };
        return Err(Error::Conflict(format!(
            "image {} is already {role} of this concept",
            short_id(&image.id)
        )));
    }
    Ok(())
}

/// Raises the tenant's memory version (inside the transaction that changes its concepts).
fn bump_version(tx: &Transaction, tenant: &Tenant) -> Result<()> {
    tx.execute(
        "INSERT INTO memory_versions (tenant, version) VALUES (?1, 1)
         ON CONFLICT (tenant) DO UPDATE SET version = version + 1",
        params![tenant.as_str()],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Deletes a blob and its embeddings if no concept of the tenant uses it any more.
fn collect_blob(tx: &Transaction, tenant: &Tenant, sha: &str) -> Result<()> {
    let users: i64 = tx
        .query_row(
            "SELECT count(*) FROM concept_images WHERE tenant = ?1 AND sha256 = ?2",
            params![tenant.as_str(), sha],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    if users > 0 {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO key_log (tenant, encoder, key, op)
         SELECT tenant, encoder, key, '-' FROM embeddings WHERE tenant = ?1 AND sha256 = ?2",
        params![tenant.as_str(), sha],
    )
    .map_err(db_err)?;
    tx.execute(
        "DELETE FROM embeddings WHERE tenant = ?1 AND sha256 = ?2",
        params![tenant.as_str(), sha],
    )
    .map_err(db_err)?;
    tx.execute(
        "DELETE FROM blobs WHERE tenant = ?1 AND sha256 = ?2",
        params![tenant.as_str(), sha],
    )
    .map_err(db_err)?;
    Ok(())
}

fn insert_concept(
    tx: &Transaction,
    tenant: &Tenant,
    new: &NewConcept,
    images: &[ImageInput],
) -> Result<ConceptId> {
    let id = ConceptId(uuid::Uuid::now_v7().to_string());
    let now = now_ms();
    insert_concept_as(tx, tenant, &id, new, (now, now), images, [])?;
    Ok(id)
}

/// Inserts a concept with a given id and (created, updated) times, its reference images and
/// its negative examples (after them).
fn insert_concept_as<'a>(
    tx: &Transaction,
    tenant: &Tenant,
    id: &ConceptId,
    new: &NewConcept,
    (created_at, updated_at): (i64, i64),
    images: impl IntoIterator<Item = &'a ImageInput>,
    negatives: impl IntoIterator<Item = &'a ImageInput>,
) -> Result<()> {
    bump_version(tx, tenant)?;
    let held = held_names(tx, tenant, None, &rules::add_keys(new))?;
    let plan = plan_add(new, images, &held);
    // A concept id in use (an import) is reported before anything the plan refuses.
    tx.execute(
        "INSERT INTO concepts (id, tenant, name, category, info, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id.0,
            tenant.as_str(),
            rap_core::strip_brackets(new.name.trim()),
            new.category.trim(),
            new.info,
            created_at,
            updated_at
        ],
    )
    .map_err(|e| match db_err(e) {
        Error::Conflict(_) => Error::Conflict(format!("concept id {} is already in use", id.0)),
        e => e,
    })?;
    let plan = plan?;
    for claim in &plan.names {
        insert_name(tx, tenant, id, claim)?;
    }
    let mut next = 0;
    for (pos, image) in plan.images {
        attach_image(tx, tenant, id, image, pos, false)?;
        next = next.max(pos + 1);
    }
    for (i, image) in negatives.into_iter().enumerate() {
        attach_image(tx, tenant, id, image, next + i as i64, true)?;
    }
    Ok(())
}

/// Deletes everything a tenant holds (its keys' removals logged), inside `tx`.
fn clear_tenant(tx: &Transaction, tenant: &Tenant) -> Result<()> {
    bump_version(tx, tenant)?;
    let t = tenant.as_str();
    tx.execute("DELETE FROM concepts WHERE tenant = ?1", params![t])
        .map_err(db_err)?;
    tx.execute(
        "INSERT INTO key_log (tenant, encoder, key, op)
         SELECT tenant, encoder, key, '-' FROM embeddings WHERE tenant = ?1 ORDER BY key",
        params![t],
    )
    .map_err(db_err)?;
    tx.execute("DELETE FROM embeddings WHERE tenant = ?1", params![t])
        .map_err(db_err)?;
    tx.execute("DELETE FROM blobs WHERE tenant = ?1", params![t])
        .map_err(db_err)?;
    tx.execute("DELETE FROM tenant_settings WHERE tenant = ?1", params![t])
        .map_err(db_err)?;
    Ok(())
}

fn key_entry(row: &rusqlite::Row) -> rusqlite::Result<(u64, String, String, Vec<u8>)> {
    Ok((
        row.get::<_, i64>(0)? as u64,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
    ))
}

fn to_key_entry((key, sha, region, vector): (u64, String, String, Vec<u8>)) -> Result<KeyEntry> {
    Ok(KeyEntry {
        key,
        image: ImageId(sha),
        region: parse_region(key, &region)?,
        embedding: Embedding::from_le_bytes(&vector)?,
    })
}

/// Stores keys of `encoder` (replacing any for the same image and region), inside `tx`;
/// keys of images not (or no longer) stored are skipped.
fn insert_keys(
    tx: &Transaction,
    tenant: &Tenant,
    encoder: &str,
    keys: &[(ImageId, Region, Embedding)],
) -> Result<()> {
    for (image, region, embedding) in keys {
        let exists: bool = tx
            .query_row(
                "SELECT 1 FROM blobs WHERE tenant = ?1 AND sha256 = ?2",
                params![tenant.as_str(), image.0],
                |_| Ok(true),
            )
            .optional()
            .map_err(db_err)?
            .unwrap_or(false);
        if !exists {
            continue; // deleted while it was being embedded
        }
        let region = region_to_text(region)?;
        let old: Option<i64> = tx
            .query_row(
                "SELECT key FROM embeddings WHERE tenant = ?1 AND sha256 = ?2 AND region = ?3 AND encoder = ?4",
                params![tenant.as_str(), image.0, region, encoder],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        if let Some(old) = old {
            tx.execute("DELETE FROM embeddings WHERE key = ?1", params![old])
                .map_err(db_err)?;
            tx.execute(
                "INSERT INTO key_log (tenant, encoder, key, op) VALUES (?1, ?2, ?3, '-')",
                params![tenant.as_str(), encoder, old],
            )
            .map_err(db_err)?;
        }
        tx.execute(
            "INSERT INTO embeddings (tenant, sha256, region, encoder, vector) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![tenant.as_str(), image.0, region, encoder, embedding.to_le_bytes()],
        )
        .map_err(db_err)?;
        let key = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO key_log (tenant, encoder, key, op) VALUES (?1, ?2, ?3, '+')",
            params![tenant.as_str(), encoder, key],
        )
        .map_err(db_err)?;
    }
    Ok(())
}

impl ConceptStore for SqliteStore {
    fn add_concept(
        &self,
        tenant: &Tenant,
        new: &NewConcept,
        images: Vec<ImageInput>,
    ) -> Result<Concept> {
        self.write(|tx| {
            let id = insert_concept(tx, tenant, new, &images)?;
            load_concept(tx, tenant, &id)
        })
    }

    fn add_concepts(
        &self,
        tenant: &Tenant,
        concepts: Vec<(NewConcept, Vec<ImageInput>)>,
    ) -> Result<Vec<Concept>> {
        self.write(|tx| {
            let mut out = Vec::with_capacity(concepts.len());
            for (new, images) in &concepts {
                let id = insert_concept(tx, tenant, new, images)?;
                out.push(load_concept(tx, tenant, &id)?);
            }
            Ok(out)
        })
    }

    fn concept(&self, tenant: &Tenant, name_or_alias: &str) -> Result<Concept> {
        self.read(|tx| {
            let id = find_concept_id(tx, tenant, name_or_alias)?;
            load_concept(tx, tenant, &id)
        })
    }

    fn concept_by_id(&self, tenant: &Tenant, id: &ConceptId) -> Result<Concept> {
        self.read(|tx| load_concept(tx, tenant, id))
    }

    fn concepts(&self, tenant: &Tenant) -> Result<Vec<Concept>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare("SELECT id FROM concepts WHERE tenant = ?1 ORDER BY name COLLATE NOCASE")
                .map_err(db_err)?;
            let ids = stmt
                .query_map(params![tenant.as_str()], |r| r.get::<_, String>(0))
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            ids.into_iter()
                .map(|id| load_concept(tx, tenant, &ConceptId(id)))
                .collect()
        })
    }

    fn categories(&self, tenant: &Tenant) -> Result<Vec<String>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT DISTINCT category FROM concepts WHERE tenant = ?1 AND category <> ''
                     ORDER BY category",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant.as_str()], |r| r.get(0))
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<String>>>()
                .map_err(db_err);
            rows
        })
    }

    fn edit_concept(
        &self,
        tenant: &Tenant,
        name_or_alias: &str,
        edit: ConceptEdit,
    ) -> Result<Concept> {
        self.write(|tx| {
            let id = find_concept_id(tx, tenant, name_or_alias)?;
            let before = load_concept(tx, tenant, &id)?;
            let held = held_names(tx, tenant, Some(&id), &rules::edit_keys(&edit))?;
            let plan = plan_edit(&before, &edit, &held, now_ms())?;
            bump_version(tx, tenant)?;
            if let Some(name) = &plan.rename {
                tx.execute(
                    "DELETE FROM names WHERE concept_id = ?1 AND (is_alias = 0 OR key = ?2)",
                    params![id.0, name.key],
                )
                .map_err(db_err)?;
                insert_name(tx, tenant, &id, name)?;
                tx.execute(
                    "UPDATE concepts SET name = ?1 WHERE id = ?2",
                    params![name.display, id.0],
                )
                .map_err(db_err)?;
            }
            if let Some(info) = plan.info {
                tx.execute("UPDATE concepts SET info = ?1 WHERE id = ?2", params![info, id.0])
                    .map_err(db_err)?;
            }
            if let Some(category) = &plan.category {
                tx.execute(
                    "UPDATE concepts SET category = ?1 WHERE id = ?2",
                    params![category, id.0],
                )
                .map_err(db_err)?;
            }
            for key in &plan.remove_aliases {
                tx.execute(
                    "DELETE FROM names WHERE concept_id = ?1 AND key = ?2 AND is_alias = 1",
                    params![id.0, key],
                )
                .map_err(db_err)?;
            }
            for alias in &plan.add_aliases {
                insert_name(tx, tenant, &id, alias)?;
            }
            for image in plan.remove_images.iter().chain(&plan.remove_negatives) {
                tx.execute(
                    "DELETE FROM concept_images WHERE concept_id = ?1 AND sha256 = ?2",
                    params![id.0, image.0],
                )
                .map_err(db_err)?;
            }
            let next_pos: i64 = tx
                .query_row(
                    "SELECT coalesce(max(position), -1) + 1 FROM concept_images WHERE concept_id = ?1",
                    params![id.0],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            let added = plan
                .add_images
                .iter()
                .map(|i| (i, false))
                .chain(plan.add_negatives.iter().map(|i| (i, true)));
            for (i, (image, negative)) in added.enumerate() {
                attach_image(tx, tenant, &id, image, next_pos + i as i64, negative)?;
            }
            for image in plan.remove_images.iter().chain(&plan.remove_negatives) {
                collect_blob(tx, tenant, &image.0)?;
            }
            tx.execute(
                "UPDATE concepts SET updated_at = ?1 WHERE id = ?2",
                params![plan.updated_at, id.0],
            )
            .map_err(db_err)?;
            load_concept(tx, tenant, &id)
        })
    }

    fn remove_concept(&self, tenant: &Tenant, name_or_alias: &str) -> Result<Concept> {
        self.write(|tx| {
            let id = find_concept_id(tx, tenant, name_or_alias)?;
            let concept = load_concept(tx, tenant, &id)?;
            bump_version(tx, tenant)?;
            tx.execute(
                "DELETE FROM concepts WHERE tenant = ?1 AND id = ?2",
                params![tenant.as_str(), id.0],
            )
            .map_err(db_err)?;
            for image in concept.images.iter().chain(&concept.negatives) {
                collect_blob(tx, tenant, &image.id.0)?;
            }
            Ok(concept)
        })
    }

    fn image_bytes(&self, tenant: &Tenant, image: &ImageId) -> Result<Vec<u8>> {
        self.read(|tx| {
            tx.query_row(
                "SELECT data FROM blobs WHERE tenant = ?1 AND sha256 = ?2",
                params![tenant.as_str(), image.0],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("image", image.0.clone()))
        })
    }

    fn memory_version(&self, tenant: &Tenant) -> Result<u64> {
        self.read(|tx| {
            tx.query_row(
                "SELECT version FROM memory_versions WHERE tenant = ?1",
                params![tenant.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(db_err)
            .map(|v| v.unwrap_or(0) as u64)
        })
    }

    fn concepts_with_image(&self, tenant: &Tenant, image: &ImageId) -> Result<Vec<ConceptId>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT concept_id FROM concept_images
                     WHERE tenant = ?1 AND sha256 = ?2 AND negative = 0",
                )
                .map_err(db_err)?;
            let ids = stmt
                .query_map(params![tenant.as_str(), image.0], |r| {
                    r.get::<_, String>(0).map(ConceptId)
                })
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            Ok(ids)
        })
    }

    fn images_without_keys(&self, tenant: &Tenant, encoder: &str) -> Result<Vec<ImageId>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT b.sha256 FROM blobs b WHERE b.tenant = ?1 AND NOT EXISTS
                     (SELECT 1 FROM embeddings e WHERE e.tenant = b.tenant AND e.sha256 = b.sha256 AND e.encoder = ?2)
                     ORDER BY b.sha256",
                )
                .map_err(db_err)?;
            let ids = stmt
                .query_map(params![tenant.as_str(), encoder], |r| {
                    r.get::<_, String>(0).map(ImageId)
                })
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            Ok(ids)
        })
    }

    fn put_keys(
        &self,
        tenant: &Tenant,
        encoder: &str,
        keys: &[(ImageId, Region, Embedding)],
    ) -> Result<()> {
        self.write(|tx| insert_keys(tx, tenant, encoder, keys))
    }

    fn keys(&self, tenant: &Tenant, encoder: &str) -> Result<Vec<KeyEntry>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT key, sha256, region, vector FROM embeddings WHERE tenant = ?1 AND encoder = ?2 ORDER BY key",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant.as_str(), encoder], key_entry)
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            rows.into_iter().map(to_key_entry).collect()
        })
    }
    fn key_locations(&self, tenant: &Tenant, encoder: &str) -> Result<Vec<KeyLocation>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT key, sha256, region FROM embeddings WHERE tenant = ?1 AND encoder = ?2 ORDER BY key",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant.as_str(), encoder], |row| {
                    Ok((
                        row.get::<_, i64>(0)? as u64,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            rows.into_iter()
                .map(|(key, sha, region)| {
                    Ok(KeyLocation {
                        key,
                        image: ImageId(sha),
                        region: parse_region(key, &region)?,
                    })
                })
                .collect()
        })
    }

    fn keys_by_id(&self, tenant: &Tenant, encoder: &str, ids: &[u64]) -> Result<Vec<KeyEntry>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT key, sha256, region, vector FROM embeddings WHERE tenant = ?1 AND encoder = ?2 AND key = ?3",
                )
                .map_err(db_err)?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(row) = stmt
                    .query_row(params![tenant.as_str(), encoder, *id as i64], key_entry)
                    .optional()
                    .map_err(db_err)?
                {
                    out.push(to_key_entry(row)?);
                }
            }
            Ok(out)
        })
    }

    fn key_version(&self, tenant: &Tenant, encoder: &str) -> Result<u64> {
        self.read(|tx| {
            tx.query_row(
                "SELECT coalesce(max(seq), 0) FROM key_log WHERE tenant = ?1 AND encoder = ?2",
                params![tenant.as_str(), encoder],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v as u64)
            .map_err(db_err)
        })
    }

    fn key_changes_since(
        &self,
        tenant: &Tenant,
        encoder: &str,
        version: u64,
    ) -> Result<(Vec<KeyChange>, u64)> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT seq, key, op FROM key_log WHERE tenant = ?1 AND encoder = ?2 AND seq > ?3 ORDER BY seq",
                )
                .map_err(db_err)?;
            let mut last = version;
            let changes = stmt
                .query_map(params![tenant.as_str(), encoder, version as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(db_err)?
                .map(|row| {
                    let (seq, key, op) = row.map_err(db_err)?;
                    last = seq;
                    Ok(if op == "+" {
                        KeyChange::Added(key)
                    } else {
                        KeyChange::Removed(key)
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((changes, last))
        })
    }

    fn stats(&self, tenant: &Tenant) -> Result<StoreStats> {
        self.read(|tx| {
            let count = |sql: &str| -> Result<u64> {
                tx.query_row(sql, params![tenant.as_str()], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
                    .map_err(db_err)
            };
            Ok(StoreStats {
                concepts: count("SELECT count(*) FROM concepts WHERE tenant = ?1")?,
                images: count("SELECT count(*) FROM blobs WHERE tenant = ?1")?,
                embeddings: count("SELECT count(*) FROM embeddings WHERE tenant = ?1")?,
            })
        })
    }

    fn encoders(&self, tenant: &Tenant) -> Result<Vec<(String, u64)>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT encoder, count(*) FROM embeddings WHERE tenant = ?1 GROUP BY encoder ORDER BY encoder",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            Ok(rows)
        })
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare("SELECT DISTINCT tenant FROM concepts ORDER BY tenant")
                .map_err(db_err)?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            names.into_iter().map(Tenant::new).collect()
        })
    }

    fn import_tenant(&self, tenant: &Tenant, dump: &TenantDump, replace: bool) -> Result<()> {
        let images = crate::migrate::check_dump(dump)?;
        self.write(|tx| {
            if replace {
                clear_tenant(tx, tenant)?;
            } else {
                let held: i64 = tx
                    .query_row(
                        "SELECT (SELECT count(*) FROM concepts WHERE tenant = ?1)
                              + (SELECT count(*) FROM blobs WHERE tenant = ?1)",
                        params![tenant.as_str()],
                        |r| r.get(0),
                    )
                    .map_err(db_err)?;
                if held > 0 {
                    return Err(Error::Conflict(format!(
                        "tenant {tenant} already holds a memory here"
                    )));
                }
            }
            for concept in &dump.concepts {
                let parts = crate::migrate::concept_parts(concept, &images)?;
                insert_concept_as(
                    tx,
                    tenant,
                    &concept.id,
                    &parts.new,
                    (concept.created_at, concept.updated_at),
                    parts.refs,
                    parts.negatives,
                )?;
            }
            for (encoder, keys) in &dump.keys {
                insert_keys(tx, tenant, encoder, keys)?;
            }
            for (key, value) in &dump.settings {
                put_setting(tx, tenant, key, Some(value))?;
            }
            Ok(())
        })
    }

    fn tenant_settings(&self, tenant: &Tenant) -> Result<BTreeMap<String, String>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare("SELECT key, value FROM tenant_settings WHERE tenant = ?1 ORDER BY key")
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?
                .collect::<rusqlite::Result<BTreeMap<String, String>>>()
                .map_err(db_err);
            rows
        })
    }

    fn tenant_setting(&self, tenant: &Tenant, key: &str) -> Result<Option<String>> {
        self.read(|tx| get_setting(tx, tenant, key))
    }

    fn set_tenant_setting(&self, tenant: &Tenant, key: &str, value: Option<&str>) -> Result<()> {
        check_setting(key, value)?;
        self.write(|tx| put_setting(tx, tenant, key, value))
    }

    fn swap_tenant_setting(
        &self,
        tenant: &Tenant,
        key: &str,
        expected: Option<&str>,
        value: Option<&str>,
    ) -> Result<bool> {
        check_setting(key, value)?;
        self.write(|tx| {
            if get_setting(tx, tenant, key)?.as_deref() != expected {
                return Ok(false);
            }
            put_setting(tx, tenant, key, value)?;
            Ok(true)
        })
    }

    fn library(&self) -> Option<&dyn crate::LibraryStore> {
        Some(self)
    }

    fn api_key_store(&self) -> Option<&dyn ApiKeyStore> {
        Some(self)
    }
}

fn get_setting(tx: &Transaction, tenant: &Tenant, key: &str) -> Result<Option<String>> {
    tx.query_row(
        "SELECT value FROM tenant_settings WHERE tenant = ?1 AND key = ?2",
        params![tenant.as_str(), key],
        |r| r.get(0),
    )
    .optional()
    .map_err(db_err)
}

/// Sets (or, with `None`, deletes) a setting, inside `tx`.
fn put_setting(tx: &Transaction, tenant: &Tenant, key: &str, value: Option<&str>) -> Result<()> {
    match value {
        Some(value) => tx.execute(
            "INSERT INTO tenant_settings (tenant, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant, key) DO UPDATE SET value = excluded.value",
            params![tenant.as_str(), key, value],
        ),
        None => tx.execute(
            "DELETE FROM tenant_settings WHERE tenant = ?1 AND key = ?2",
            params![tenant.as_str(), key],
        ),
    }
    .map_err(db_err)?;
    Ok(())
}

fn api_key_row(r: &rusqlite::Row) -> rusqlite::Result<(String, String, i64, Option<i64>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_api_key(
    (id, tenant, created_at, revoked_at): (String, String, i64, Option<i64>),
) -> Result<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        id,
        tenant: Tenant::new(tenant)?,
        created_at,
        revoked_at,
    })
}

fn export_api_keys(tx: &Transaction) -> Result<Vec<StoredApiKey>> {
    let mut stmt = tx
        .prepare(
            "SELECT id, tenant, created_at, revoked_at, hash FROM api_keys ORDER BY created_at, id",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| Ok((api_key_row(r)?, r.get::<_, String>(4)?)))
        .map_err(db_err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    rows.into_iter()
        .map(|(row, hash)| {
            Ok(StoredApiKey {
                info: to_api_key(row)?,
                hash,
            })
        })
        .collect()
}

impl ApiKeyStore for SqliteStore {
    fn add_api_key(&self, tenant: &Tenant, key: &NewApiKey) -> Result<ApiKeyInfo> {
        let created_at = now_ms();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO api_keys (id, tenant, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![key.id, tenant.as_str(), key.hash, created_at],
            )
            .map_err(db_err)?;
            Ok(ApiKeyInfo {
                id: key.id.clone(),
                tenant: tenant.clone(),
                created_at,
                revoked_at: None,
            })
        })
    }

    fn api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare("SELECT id, tenant, created_at, revoked_at FROM api_keys ORDER BY created_at, id")
                .map_err(db_err)?;
            let rows = stmt
                .query_map([], api_key_row)
                .map_err(db_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db_err)?;
            rows.into_iter().map(to_api_key).collect()
        })
    }

    fn revoke_api_key(&self, id: &str) -> Result<ApiKeyInfo> {
        let id = crate::api_keys::key_id(id)?;
        self.write(|tx| {
            let row = tx
                .query_row(
                    "SELECT id, tenant, created_at, revoked_at FROM api_keys WHERE id = ?1",
                    params![id],
                    api_key_row,
                )
                .optional()
                .map_err(db_err)?
                .ok_or_else(|| Error::not_found("API key", id.clone()))?;
            if row.3.is_some() {
                return Err(Error::Conflict(format!("API key {id} is already revoked")));
            }
            let now = now_ms();
            tx.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1",
                params![id, now],
            )
            .map_err(db_err)?;
            to_api_key((row.0, row.1, row.2, Some(now)))
        })
    }

    fn tenant_for_key_hash(&self, hash: &str) -> Result<Option<Tenant>> {
        self.read(|tx| {
            let tenant: Option<String> = tx
                .prepare_cached(
                    "SELECT tenant FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL",
                )
                .and_then(|mut s| s.query_row(params![hash], |r| r.get(0)).optional())
                .map_err(db_err)?;
            tenant.map(Tenant::new).transpose()
        })
    }

    fn has_active_api_keys(&self) -> Result<bool> {
        self.read(|tx| {
            tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)",
                [],
                |r| r.get::<_, bool>(0),
            )
            .map_err(db_err)
        })
    }

    fn export_api_keys(&self) -> Result<Vec<StoredApiKey>> {
        self.read(export_api_keys)
    }

    fn import_api_keys(&self, keys: &[StoredApiKey], replace: bool) -> Result<()> {
        self.write(|tx| {
            for (key, action) in plan_import(keys, export_api_keys(tx)?, replace)? {
                let i = &key.info;
                let sql = match action {
                    ImportAction::Insert => {
                        "INSERT INTO api_keys (id, tenant, hash, created_at, revoked_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)"
                    }
                    ImportAction::Overwrite => {
                        "UPDATE api_keys SET tenant = ?2, hash = ?3, created_at = ?4,
                         revoked_at = ?5 WHERE id = ?1"
                    }
                };
                tx.execute(
                    sql,
                    params![
                        i.id,
                        i.tenant.as_str(),
                        key.hash,
                        i.created_at,
                        i.revoked_at
                    ],
                )
                .map_err(db_err)?;
            }
            Ok(())
        })
    }
}
