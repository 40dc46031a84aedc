//! The shared concept memory: PostgreSQL + pgvector behind `rap-memory`'s store traits.
//!
//! [`PgStore`] implements [`ConceptStore`] (concepts, aliases, images, embeddings, the key log)
//! and [`ApiKeyStore`] over one PostgreSQL database, so any number of `rap` processes can share
//! one memory. The schema and its migrations are in [`schema`].
//!
//! # Transactions
//! Every method is one transaction. Writers of a tenant first take that tenant's advisory
//! lock (`pg_advisory_xact_lock` of a hash of its name), so writes of one tenant are serialised
//! as the embedded store's are (checks such as "is this the last user of the blob" cannot race)
//! and the key log's sequence order is its commit order within the tenant, while other tenants
//! write in parallel. Readers take a repeatable-read snapshot and no lock.
//!
//! # Search
//! [`ConceptStore::search_keys`] runs in the database and never leaves the tenant: every query
//! filters on `tenant_id` and encoder. pgvector 0.6 has no iterative index scans (0.8 does), so
//! one shared HNSW index filtered afterwards would return a small tenant's keys only when they
//! happen to be among the index's nearest candidates overall, i.e. usually not at all. Instead:
//! - a (tenant, encoder) with at most [`PgOptions::hnsw_above`] keys (almost every tenant: one
//!   user's memory is hundreds of images) is searched exactly: the `(tenant_id, encoder, key)`
//!   btree yields just its rows and they are ranked by cosine distance - exact top-k, with cost
//!   proportional to the tenant's size, not the table's;
//! - a larger one gets its own partial HNSW index (`WHERE tenant_id = .. AND encoder = ..`,
//!   cosine distance over `vector::vector(DIM)`), built concurrently once it grows past the
//!   threshold and recorded in `tenant_indexes`; its searches name that predicate literally so
//!   the planner uses exactly that index. Until the index is recorded, search stays exact.
//!
//! # Rules
//! What may be written (names, aliases, images, edits) is decided by `rap_memory::rules`, the
//! same functions the embedded store calls: this crate reads what a rule needs and writes the
//! plan.

#![forbid(unsafe_code)]

mod bulk;
mod external;
mod import;
pub mod s3;
pub mod schema;
/// Throwaway PostgreSQL and S3 servers for tests (feature `testing`).
#[cfg(feature = "testing")]
pub mod testing;

pub use external::BlobGcReport;
pub use s3::{open_blob_store, S3BlobStore, S3Config};

use external::ImageBytes;
use pgvector::Vector;
use postgres::error::SqlState;
use postgres::{IsolationLevel, NoTls, Transaction};
use r2d2_postgres::PostgresConnectionManager;
use rap_core::{
    Concept, ConceptId, ConceptImage, Embedding, Error, ImageId, NewConcept, Region, Result, Tenant,
};
use rap_memory::api_keys::key_id;
use rap_memory::api_keys::{plan_import, ImportAction};
use rap_memory::rules::{
    self, check_setting, lookup_key, parse_region, plan_add, plan_edit, short_id, HeldName,
    NameClaim,
};
pub(crate) use rap_memory::rules::{now_ms, region_to_text};
use rap_memory::{
    ApiKeyInfo, ApiKeyStore, BlobStore, ConceptEdit, ConceptStore, ImageInput, KeyChange, KeyEntry,
    KeyHit, KeyLocation, NewApiKey, StoreStats, StoredApiKey, TenantDump,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a [`PgStore`] connects and when it builds per-tenant HNSW indexes.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections kept open (each `rap serve` worker uses one at a time).
    pub pool_size: u32,
    /// A (tenant, encoder) with more keys than this gets its own HNSW index; at or below it,
    /// search is exact.
    pub hnsw_above: usize,
    /// HNSW search breadth (`hnsw.ef_search`, at least `k`, at most 1000).
    pub ef_search: usize,
    /// How long to wait for a connection before giving up.
    pub connect_timeout: std::time::Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 8,
            hnsw_above: 20_000,
            ef_search: 100,
            connect_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// What [`PgStore::disk_usage`] measures, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub total_bytes: u64,
    /// The embeddings table with its TOAST table and every index on it (HNSW included).
    pub embeddings_bytes: u64,
    pub hnsw_index_bytes: u64,
}

/// The session advisory lock held while a per-tenant HNSW index is built.
const INDEX_BUILD_LOCK: i64 = 0x0072_6170_5f68_6e73;

/// The PostgreSQL-backed [`ConceptStore`].
pub struct PgStore {
    pool: r2d2::Pool<PostgresConnectionManager<NoTls>>,
    options: PgOptions,
    /// Where image bytes go instead of `blobs.data` (see [`external`]), if anywhere.
    blobs: Option<Arc<dyn BlobStore>>,
}

type Conn = r2d2::PooledConnection<PostgresConnectionManager<NoTls>>;

/// A driver error with the server's message (the driver's own text is only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => e.to_string(),
    }
}

/// PostgreSQL's error as the crate's ([`rules::database_error`]).
pub(crate) fn db_err(e: postgres::Error) -> Error {
    let unique = e.code() == Some(&SqlState::UNIQUE_VIOLATION);
    rules::database_error(describe(&e), unique, e)
}

fn pool_err(e: r2d2::Error) -> Error {
    Error::unavailable_from("cannot connect to PostgreSQL", e)
}

impl PgStore {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB` or `key=value` form,
    /// without TLS) and applies any missing migrations.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PgOptions::default())
    }

    pub fn connect_with(url: &str, options: PgOptions) -> Result<Self> {
        let config: postgres::Config = url.parse().map_err(|e| {
            Error::invalid(format!("invalid PostgreSQL URL (RAP_DATABASE_URL): {e}"))
        })?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(options.pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(options.connect_timeout)
            .build(manager)
            .map_err(pool_err)?;
        let store = PgStore {
            pool,
            options,
            blobs: None,
        };
        let mut conn = store.conn()?;
        schema::migrate(&mut conn)?;
        drop(conn);
        Ok(store)
    }

    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    fn conn(&self) -> Result<Conn> {
        self.pool.get().map_err(pool_err)
    }

    /// Runs `f` in a transaction holding `lock`'s advisory lock, committing only on success.
    fn write_locked<T>(
        &self,
        lock: &str,
        f: impl FnOnce(&mut Transaction) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db_err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&lock],
        )
        .map_err(db_err)?;
        let out = f(&mut tx)?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// A write of one tenant (serialised with the tenant's other writes).
    fn write<T>(
        &self,
        tenant: &Tenant,
        f: impl FnOnce(&mut Transaction) -> Result<T>,
    ) -> Result<T> {
        self.write_locked(&format!("rap tenant {}", tenant.as_str()), f)
    }

    /// Runs `f` in a read-only snapshot.
    fn read<T>(&self, f: impl FnOnce(&mut Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(db_err)?;
        let out = f(&mut tx)?;
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// The server's plan for a search of (tenant, encoder) (`EXPLAIN` of the very statement
    /// [`ConceptStore::search_keys`] runs): which index serves it.
    pub fn search_plan(
        &self,
        tenant: &Tenant,
        encoder: &str,
        query: &Embedding,
        k: usize,
    ) -> Result<String> {
        let t = tenant.as_str();
        self.read(|tx| {
            let (sql, indexed) = search_sql(tx, &self.options, t, encoder, k)?;
            let vector = Vector::from(query.as_slice().to_vec());
            let limit = k as i64;
            let sql = format!("EXPLAIN {sql}");
            let rows = if indexed {
                tx.query(&sql, &[&vector, &limit])
            } else {
                tx.query(&sql, &[&vector, &limit, &t, &encoder])
            }
            .map_err(db_err)?;
            Ok(rows
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n"))
        })
    }

    /// Bytes on disk: the whole database, the embeddings table (with its TOAST and btrees)
    /// and the per-tenant HNSW indexes.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        self.read(|tx| {
            let row = tx
                .query_one(
                    "SELECT pg_database_size(current_database()),
                            pg_total_relation_size('embeddings'),
                            coalesce((SELECT sum(pg_relation_size(to_regclass(index_name)))
                                      FROM tenant_indexes), 0)::bigint",
                    &[],
                )
                .map_err(db_err)?;
            Ok(DiskUsage {
                total_bytes: row.get::<_, i64>(0) as u64,
                embeddings_bytes: row.get::<_, i64>(1) as u64,
                hnsw_index_bytes: row.get::<_, i64>(2) as u64,
            })
        })
    }

    /// The name of the HNSW index serving (tenant, encoder), once it has one.
    pub fn tenant_index(&self, tenant: &Tenant, encoder: &str) -> Result<Option<String>> {
        self.read(|tx| {
            Ok(tx
                .query_opt(
                    "SELECT index_name FROM tenant_indexes WHERE tenant_id = $1 AND encoder = $2",
                    &[&tenant.as_str(), &encoder],
                )
                .map_err(db_err)?
                .map(|r| r.get(0)))
        })
    }

    /// Gives a (tenant, encoder) above the threshold its own HNSW index. Runs outside any
    /// transaction (`CREATE INDEX CONCURRENTLY` blocks no writer); a failure leaves search
    /// exact, so it is logged, not returned.
    fn ensure_tenant_index(&self, tenant: &Tenant, encoder: &str) {
        if let Err(e) = self.try_ensure_tenant_index(tenant, encoder) {
            tracing::warn!(tenant = %tenant, encoder, "no HNSW index yet (search stays exact): {e}");
        }
    }

    fn try_ensure_tenant_index(&self, tenant: &Tenant, encoder: &str) -> Result<()> {
        let mut conn = self.conn()?;
        let t = tenant.as_str();
        let row = conn
            .query_one(
                "SELECT count(*), min(dim), max(dim),
                        EXISTS (SELECT 1 FROM tenant_indexes WHERE tenant_id = $1 AND encoder = $2)
                 FROM embeddings WHERE tenant_id = $1 AND encoder = $2",
                &[&t, &encoder],
            )
            .map_err(db_err)?;
        let (count, min_dim, max_dim, indexed): (i64, Option<i32>, Option<i32>, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if indexed || count as usize <= self.options.hnsw_above {
            return Ok(());
        }
        let (Some(dim), Some(max_dim)) = (min_dim, max_dim) else {
            return Ok(());
        };
        if dim != max_dim {
            return Err(Error::storage(format!(
                "keys of encoder {encoder} have {dim} to {max_dim} dimensions"
            )));
        }
        // One build at a time per database: two `CREATE INDEX CONCURRENTLY` on one table wait
        // for each other's transaction (a deadlock the server breaks by failing one, whose
        // work is lost). Whoever does not get the lock leaves it to a later write.
        let locked: bool = conn
            .query_one("SELECT pg_try_advisory_lock($1)", &[&INDEX_BUILD_LOCK])
            .map_err(db_err)?
            .get(0);
        if !locked {
            tracing::debug!(tenant = %tenant, encoder, "another HNSW build is running; later");
            return Ok(());
        }
        let built = self.build_tenant_index(&mut conn, tenant, encoder, dim, count);
        conn.execute("SELECT pg_advisory_unlock($1)", &[&INDEX_BUILD_LOCK])
            .map_err(db_err)?;
        built
    }

    /// Builds (tenant, encoder)'s HNSW index, holding [`INDEX_BUILD_LOCK`].
    fn build_tenant_index(
        &self,
        conn: &mut Conn,
        tenant: &Tenant,
        encoder: &str,
        dim: i32,
        count: i64,
    ) -> Result<()> {
        let t = tenant.as_str();
        // Another process may have built it since the check above.
        let indexed = conn
            .query_opt(
                "SELECT 1 FROM tenant_indexes WHERE tenant_id = $1 AND encoder = $2",
                &[&t, &encoder],
            )
            .map_err(db_err)?
            .is_some();
        if indexed {
            return Ok(());
        }
        // The server quotes the names (format's %I and %L), not this code.
        let row = conn
            .query_one(
                "SELECT 'emb_hnsw_' || md5($1::text || E'\\n' || $2::text),
                        format('tenant_id = %L AND encoder = %L', $1::text, $2::text)",
                &[&t, &encoder],
            )
            .map_err(db_err)?;
        let (name, predicate): (String, String) = (row.get(0), row.get(1));
        let create: String = conn
            .query_one(
                "SELECT format('CREATE INDEX CONCURRENTLY IF NOT EXISTS %I ON embeddings
                     USING hnsw ((vector::vector(%s)) vector_cosine_ops) WHERE %s',
                     $1::text, $2::integer, $3::text)",
                &[&name, &dim, &predicate],
            )
            .map_err(db_err)?
            .get(0);
        conn.batch_execute(&create).map_err(db_err)?;
        // A build interrupted earlier leaves an invalid index that IF NOT EXISTS keeps.
        let valid: Option<bool> = conn
            .query_opt(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                &[&name],
            )
            .map_err(db_err)?
            .map(|r| r.get(0));
        if valid != Some(true) {
            conn.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS \"{name}\""))
                .map_err(db_err)?;
            return Err(Error::storage(format!(
                "index {name} was left invalid; dropped"
            )));
        }
        conn.execute(
            "INSERT INTO tenant_indexes (tenant_id, encoder, dim, index_name, predicate, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[&t, &encoder, &dim, &name, &predicate, &now_ms()],
        )
        .map_err(db_err)?;
        tracing::info!(tenant = %tenant, encoder, keys = count, index = name, "HNSW index built");
        Ok(())
    }
}

// ---- helpers running inside a transaction ----

fn find_concept_id(
    tx: &mut Transaction,
    tenant: &Tenant,
    name_or_alias: &str,
) -> Result<ConceptId> {
    let key = lookup_key(name_or_alias)?;
    tx.query_opt(
        "SELECT concept_id FROM names WHERE tenant_id = $1 AND key = $2",
        &[&tenant.as_str(), &key],
    )
    .map_err(db_err)?
    .map(|r| ConceptId(r.get(0)))
    .ok_or_else(|| Error::not_found("concept", name_or_alias))
}

fn load_concept(tx: &mut Transaction, tenant: &Tenant, id: &ConceptId) -> Result<Concept> {
    let t = tenant.as_str();
    let row = tx
        .query_opt(
            "SELECT name, category, info, created_at, updated_at FROM concepts
             WHERE tenant_id = $1 AND id = $2",
            &[&t, &id.0],
        )
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("concept", id.0.clone()))?;
    let aliases = tx
        .query(
            "SELECT display FROM names WHERE tenant_id = $1 AND concept_id = $2 AND is_alias
             ORDER BY key COLLATE \"C\"",
            &[&t, &id.0],
        )
        .map_err(db_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (mut images, mut negatives) = (Vec::new(), Vec::new());
    for r in tx
        .query(
            "SELECT b.sha256, b.width, b.height, b.format, b.size, ci.negative
             FROM concept_images ci JOIN blobs b ON b.tenant_id = ci.tenant_id AND b.sha256 = ci.sha256
             WHERE ci.tenant_id = $1 AND ci.concept_id = $2 ORDER BY ci.position",
            &[&t, &id.0],
        )
        .map_err(db_err)?
    {
        let image = ConceptImage {
            id: ImageId(r.get(0)),
            width: r.get::<_, i32>(1) as u32,
            height: r.get::<_, i32>(2) as u32,
            format: r.get(3),
            bytes: r.get::<_, i64>(4) as u64,
        };
        if r.get::<_, bool>(5) {
            negatives.push(image);
        } else {
            images.push(image);
        }
    }
    Ok(Concept {
        id: id.clone(),
        name: row.get(0),
        aliases,
        category: row.get(1),
        info: row.get(2),
        images,
        negatives,
        created_at: row.get(3),
        updated_at: row.get(4),
    })
}

/// What [`rules::plan_add`] and [`rules::plan_edit`] need: every name and alias of `concept`
/// (if given) and whatever the tenant holds under `keys`.
pub(crate) fn held_names(
    tx: &mut Transaction,
    tenant: &Tenant,
    concept: Option<&ConceptId>,
    keys: &[String],
) -> Result<Vec<HeldName>> {
    let none = String::new();
    let concept = concept.map_or(&none, |c| &c.0);
    Ok(tx
        .query(
            "SELECT n.key, n.concept_id, c.name, n.is_alias FROM names n
             JOIN concepts c ON c.tenant_id = n.tenant_id AND c.id = n.concept_id
             WHERE n.tenant_id = $1 AND (n.concept_id = $2 OR n.key = ANY($3))",
            &[&tenant.as_str(), concept, &keys],
        )
        .map_err(db_err)?
        .iter()
        .map(|r| HeldName {
            key: r.get(0),
            concept: ConceptId(r.get(1)),
            concept_name: r.get(2),
            is_alias: r.get(3),
        })
        .collect())
}

/// Writes a name or alias a plan claimed.
pub(crate) fn insert_name(
    tx: &mut Transaction,
    tenant: &Tenant,
    id: &ConceptId,
    claim: &NameClaim,
) -> Result<()> {
    tx.execute(
        "INSERT INTO names (tenant_id, key, concept_id, display, is_alias) VALUES ($1, $2, $3, $4, $5)",
        &[&tenant.as_str(), &claim.key, &id.0, &claim.display, &claim.is_alias],
    )
    .map_err(db_err)?;
    Ok(())
}

/// How an image is attached to a concept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Reference,
    Negative,
}

/// Stores `image` (once per tenant) and attaches it to concept `id` in `role`.
fn attach_image(
    tx: &mut Transaction,
    tenant: &Tenant,
    id: &ConceptId,
    image: &ImageInput,
    position: i32,
    bytes: ImageBytes,
    role: Role,
) -> Result<()> {
    let t = tenant.as_str();
    // With a blob store the bytes are its object (written before this, see `external`).
    let data = (bytes == ImageBytes::InRow).then_some(&image.bytes[..]);
    tx.execute(
        "INSERT INTO blobs (tenant_id, sha256, data, size, format, width, height)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        &[
            &t,
            &image.id.0,
            &data,
            &(image.bytes.len() as i64),
            &image.meta.format,
            &(image.meta.width as i32),
            &(image.meta.height as i32),
        ],
    )
    .map_err(db_err)?;
    let inserted = tx
        .execute(
            "INSERT INTO concept_images (tenant_id, concept_id, sha256, position, negative)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&t, &id.0, &image.id.0, &position, &(role == Role::Negative)],
        )
        .map_err(db_err)?;
    if inserted == 0 {
        let role = match role {
            Role::Reference => "a reference image",
            Role::Negative => "a negative example",
        };
        return Err(Error::Conflict(format!(
            "image {} is already {role} of this concept",
            short_id(&image.id)
        )));
    }
    Ok(())
}

/// Raises the tenant's memory version, inside the transaction that changes its concepts.
pub(crate) fn bump_version(tx: &mut Transaction, tenant: &Tenant) -> Result<()> {
    tx.execute(
        "INSERT INTO memory_versions (tenant_id, version) VALUES ($1, 1)
         ON CONFLICT (tenant_id) DO UPDATE SET version = memory_versions.version + 1",
        &[&tenant.as_str()],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Deletes a blob and its embeddings if no concept of the tenant uses it any more.
fn collect_blob(tx: &mut Transaction, tenant: &Tenant, sha: &str) -> Result<()> {
    let t = tenant.as_str();
    let users: i64 = tx
        .query_one(
            "SELECT count(*) FROM concept_images WHERE tenant_id = $1 AND sha256 = $2",
            &[&t, &sha],
        )
        .map_err(db_err)?
        .get(0);
    if users > 0 {
        return Ok(());
    }
    tx.execute(
        "WITH gone AS (DELETE FROM embeddings WHERE tenant_id = $1 AND sha256 = $2
                       RETURNING tenant_id, encoder, key)
         INSERT INTO key_log (tenant_id, encoder, key, op)
         SELECT tenant_id, encoder, key, '-' FROM gone ORDER BY key",
        &[&t, &sha],
    )
    .map_err(db_err)?;
    tx.execute(
        "DELETE FROM blobs WHERE tenant_id = $1 AND sha256 = $2",
        &[&t, &sha],
    )
    .map_err(db_err)?;
    Ok(())
}

fn insert_concept(
    tx: &mut Transaction,
    tenant: &Tenant,
    new: &NewConcept,
    images: &[ImageInput],
    bytes: ImageBytes,
) -> Result<ConceptId> {
    let held = held_names(tx, tenant, None, &rules::add_keys(new))?;
    let plan = plan_add(new, images, &held)?;
    let id = ConceptId(uuid::Uuid::now_v7().to_string());
    let now = now_ms();
    let t = tenant.as_str();
    tx.execute(
        "INSERT INTO tenants (tenant_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&t, &now],
    )
    .map_err(db_err)?;
    tx.execute(
        "INSERT INTO concepts (tenant_id, id, name, category, info, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &[&t, &id.0, &plan.name, &plan.category, &plan.info, &now],
    )
    .map_err(db_err)?;
    for claim in &plan.names {
        insert_name(tx, tenant, &id, claim)?;
    }
    for (pos, image) in plan.images {
        attach_image(tx, tenant, &id, image, pos as i32, bytes, Role::Reference)?;
    }
    bump_version(tx, tenant)?;
    Ok(id)
}

fn to_location(row: &postgres::Row) -> Result<KeyLocation> {
    let key = row.get::<_, i64>(0) as u64;
    Ok(KeyLocation {
        key,
        image: ImageId(row.get(1)),
        region: parse_region(key, row.get(2))?,
    })
}

fn to_key_entry(row: &postgres::Row) -> Result<KeyEntry> {
    let location = to_location(row)?;
    let vector: Vector = row.get(3);
    Ok(KeyEntry {
        key: location.key,
        image: location.image,
        region: location.region,
        embedding: Embedding::from_unit(vector.to_vec()),
    })
}

impl ConceptStore for PgStore {
    fn add_concept(
        &self,
        tenant: &Tenant,
        new: &NewConcept,
        images: Vec<ImageInput>,
    ) -> Result<Concept> {
        let refs: Vec<&ImageInput> = images.iter().collect();
        self.write_with_images(tenant, &refs, |tx, bytes| {
            let id = insert_concept(tx, tenant, new, &images, bytes)?;
            load_concept(tx, tenant, &id)
        })
    }

    fn add_concepts(
        &self,
        tenant: &Tenant,
        concepts: Vec<(NewConcept, Vec<ImageInput>)>,
    ) -> Result<Vec<Concept>> {
        let refs: Vec<&ImageInput> = concepts.iter().flat_map(|(_, i)| i).collect();
        self.write_with_images(tenant, &refs, |tx, bytes| {
            bump_version(tx, tenant)?;
            let ids = match bulk::insert_concepts(tx, tenant, &concepts, bytes)? {
                Some(ids) => ids,
                // Something to refuse: one by one, so the error is a single add's.
                None => concepts
                    .iter()
                    .map(|(new, images)| insert_concept(tx, tenant, new, images, bytes))
                    .collect::<Result<Vec<_>>>()?,
            };
            bulk::load_concepts(tx, tenant, &ids)
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
            let ids: Vec<String> = tx
                .query(
                    "SELECT id FROM concepts WHERE tenant_id = $1 ORDER BY lower(name) COLLATE \"C\", id",
                    &[&tenant.as_str()],
                )
                .map_err(db_err)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            ids.into_iter()
                .map(|id| load_concept(tx, tenant, &ConceptId(id)))
                .collect()
        })
    }

    fn categories(&self, tenant: &Tenant) -> Result<Vec<String>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT DISTINCT category COLLATE \"C\" AS c FROM concepts
                     WHERE tenant_id = $1 AND category <> '' ORDER BY c",
                    &[&tenant.as_str()],
                )
                .map_err(db_err)?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    fn edit_concept(
        &self,
        tenant: &Tenant,
        name_or_alias: &str,
        edit: ConceptEdit,
    ) -> Result<Concept> {
        let t = tenant.as_str();
        let added: Vec<&ImageInput> = edit.add_images.iter().chain(&edit.add_negatives).collect();
        let mut dropped = Vec::new();
        let concept = self.write_with_images(tenant, &added, |tx, bytes| {
            let id = find_concept_id(tx, tenant, name_or_alias)?;
            let before = load_concept(tx, tenant, &id)?;
            let held = held_names(tx, tenant, Some(&id), &rules::edit_keys(&edit))?;
            let plan = plan_edit(&before, &edit, &held, now_ms())?;
            bump_version(tx, tenant)?;
            if let Some(name) = &plan.rename {
                tx.execute(
                    "DELETE FROM names WHERE tenant_id = $1 AND concept_id = $2
                     AND (NOT is_alias OR key = $3)",
                    &[&t, &id.0, &name.key],
                )
                .map_err(db_err)?;
                insert_name(tx, tenant, &id, name)?;
                tx.execute(
                    "UPDATE concepts SET name = $3 WHERE tenant_id = $1 AND id = $2",
                    &[&t, &id.0, &name.display],
                )
                .map_err(db_err)?;
            }
            if let Some(info) = plan.info {
                tx.execute(
                    "UPDATE concepts SET info = $3 WHERE tenant_id = $1 AND id = $2",
                    &[&t, &id.0, &info],
                )
                .map_err(db_err)?;
            }
            if let Some(category) = &plan.category {
                tx.execute(
                    "UPDATE concepts SET category = $3 WHERE tenant_id = $1 AND id = $2",
                    &[&t, &id.0, category],
                )
                .map_err(db_err)?;
            }
            for key in &plan.remove_aliases {
                tx.execute(
                    "DELETE FROM names WHERE tenant_id = $1 AND concept_id = $2 AND key = $3 AND is_alias",
                    &[&t, &id.0, key],
                )
                .map_err(db_err)?;
            }
            for alias in &plan.add_aliases {
                insert_name(tx, tenant, &id, alias)?;
            }
            let removed: Vec<ImageId> = plan
                .remove_images
                .iter()
                .chain(&plan.remove_negatives)
                .cloned()
                .collect();
            for image in &removed {
                tx.execute(
                    "DELETE FROM concept_images WHERE tenant_id = $1 AND concept_id = $2 AND sha256 = $3",
                    &[&t, &id.0, &image.0],
                )
                .map_err(db_err)?;
            }
            let next_pos: i32 = tx
                .query_one(
                    "SELECT coalesce(max(position), -1) + 1 FROM concept_images
                     WHERE tenant_id = $1 AND concept_id = $2",
                    &[&t, &id.0],
                )
                .map_err(db_err)?
                .get(0);
            let added = plan
                .add_images
                .iter()
                .map(|i| (i, Role::Reference))
                .chain(plan.add_negatives.iter().map(|i| (i, Role::Negative)));
            for (i, (image, role)) in added.enumerate() {
                attach_image(tx, tenant, &id, image, next_pos + i as i32, bytes, role)?;
            }
            for image in &removed {
                collect_blob(tx, tenant, &image.0)?;
            }
            dropped = removed;
            tx.execute(
                "UPDATE concepts SET updated_at = $3 WHERE tenant_id = $1 AND id = $2",
                &[&t, &id.0, &plan.updated_at],
            )
            .map_err(db_err)?;
            load_concept(tx, tenant, &id)
        })?;
        self.drop_unreferenced(tenant, &dropped);
        Ok(concept)
    }

    fn remove_concept(&self, tenant: &Tenant, name_or_alias: &str) -> Result<Concept> {
        let removed = self.write(tenant, |tx| {
            let id = find_concept_id(tx, tenant, name_or_alias)?;
            let concept = load_concept(tx, tenant, &id)?;
            bump_version(tx, tenant)?;
            tx.execute(
                "DELETE FROM concepts WHERE tenant_id = $1 AND id = $2",
                &[&tenant.as_str(), &id.0],
            )
            .map_err(db_err)?;
            for image in concept.images.iter().chain(&concept.negatives) {
                collect_blob(tx, tenant, &image.id.0)?;
            }
            Ok(concept)
        })?;
        let images: Vec<ImageId> = removed
            .images
            .iter()
            .chain(&removed.negatives)
            .map(|i| i.id.clone())
            .collect();
        self.drop_unreferenced(tenant, &images);
        Ok(removed)
    }

    fn image_bytes(&self, tenant: &Tenant, image: &ImageId) -> Result<Vec<u8>> {
        let data: Option<Vec<u8>> = self.read(|tx| {
            tx.query_opt(
                "SELECT data FROM blobs WHERE tenant_id = $1 AND sha256 = $2",
                &[&tenant.as_str(), &image.0],
            )
            .map_err(db_err)?
            .map(|r| r.get(0))
            .ok_or_else(|| Error::not_found("image", image.0.clone()))
        })?;
        self.row_bytes(tenant, image, data)
    }

    fn memory_version(&self, tenant: &Tenant) -> Result<u64> {
        self.read(|tx| {
            Ok(tx
                .query_opt(
                    "SELECT version FROM memory_versions WHERE tenant_id = $1",
                    &[&tenant.as_str()],
                )
                .map_err(db_err)?
                .map_or(0, |r| r.get::<_, i64>(0) as u64))
        })
    }

    fn concepts_with_image(&self, tenant: &Tenant, image: &ImageId) -> Result<Vec<ConceptId>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT concept_id FROM concept_images
                     WHERE tenant_id = $1 AND sha256 = $2 AND NOT negative",
                    &[&tenant.as_str(), &image.0],
                )
                .map_err(db_err)?
                .iter()
                .map(|r| ConceptId(r.get(0)))
                .collect())
        })
    }

    fn images_without_keys(&self, tenant: &Tenant, encoder: &str) -> Result<Vec<ImageId>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT b.sha256 FROM blobs b WHERE b.tenant_id = $1 AND NOT EXISTS
                     (SELECT 1 FROM embeddings e
                      WHERE e.tenant_id = b.tenant_id AND e.encoder = $2 AND e.sha256 = b.sha256)
                     ORDER BY b.sha256 COLLATE \"C\"",
                    &[&tenant.as_str(), &encoder],
                )
                .map_err(db_err)?
                .iter()
                .map(|r| ImageId(r.get(0)))
                .collect())
        })
    }

    fn put_keys(
        &self,
        tenant: &Tenant,
        encoder: &str,
        keys: &[(ImageId, Region, Embedding)],
    ) -> Result<()> {
        let t = tenant.as_str();
        self.write(tenant, |tx| {
            if bulk::put_keys(tx, t, encoder, keys)?.is_some() {
                return Ok(());
            }
            for (image, region, embedding) in keys {
                let exists = tx
                    .query_opt(
                        "SELECT 1 FROM blobs WHERE tenant_id = $1 AND sha256 = $2",
                        &[&t, &image.0],
                    )
                    .map_err(db_err)?
                    .is_some();
                if !exists {
                    continue; // deleted while it was being embedded
                }
                let region = region_to_text(region)?;
                tx.execute(
                    "WITH gone AS (DELETE FROM embeddings
                         WHERE tenant_id = $1 AND encoder = $2 AND sha256 = $3 AND region = $4
                         RETURNING key)
                     INSERT INTO key_log (tenant_id, encoder, key, op)
                     SELECT $1, $2, key, '-' FROM gone",
                    &[&t, &encoder, &image.0, &region],
                )
                .map_err(db_err)?;
                let vector = Vector::from(embedding.as_slice().to_vec());
                let key: i64 = tx
                    .query_one(
                        "INSERT INTO embeddings (tenant_id, encoder, sha256, region, dim, vector)
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING key",
                        &[
                            &t,
                            &encoder,
                            &image.0,
                            &region,
                            &(embedding.dim() as i32),
                            &vector,
                        ],
                    )
                    .map_err(db_err)?
                    .get(0);
                tx.execute(
                    "INSERT INTO key_log (tenant_id, encoder, key, op) VALUES ($1, $2, $3, '+')",
                    &[&t, &encoder, &key],
                )
                .map_err(db_err)?;
            }
            Ok(())
        })?;
        self.ensure_tenant_index(tenant, encoder);
        Ok(())
    }

    fn keys(&self, tenant: &Tenant, encoder: &str) -> Result<Vec<KeyEntry>> {
        self.read(|tx| {
            tx.query(
                "SELECT key, sha256, region, vector FROM embeddings
                 WHERE tenant_id = $1 AND encoder = $2 ORDER BY key",
                &[&tenant.as_str(), &encoder],
            )
            .map_err(db_err)?
            .iter()
            .map(to_key_entry)
            .collect()
        })
    }

    fn key_locations(&self, tenant: &Tenant, encoder: &str) -> Result<Vec<KeyLocation>> {
        self.read(|tx| {
            tx.query(
                "SELECT key, sha256, region FROM embeddings
                 WHERE tenant_id = $1 AND encoder = $2 ORDER BY key",
                &[&tenant.as_str(), &encoder],
            )
            .map_err(db_err)?
            .iter()
            .map(to_location)
            .collect()
        })
    }

    fn keys_by_id(&self, tenant: &Tenant, encoder: &str, ids: &[u64]) -> Result<Vec<KeyEntry>> {
        let ids: Vec<i64> = ids.iter().map(|&k| k as i64).collect();
        self.read(|tx| {
            tx.query(
                "SELECT key, sha256, region, vector FROM embeddings
                 WHERE tenant_id = $1 AND encoder = $2 AND key = ANY($3) ORDER BY key",
                &[&tenant.as_str(), &encoder, &ids],
            )
            .map_err(db_err)?
            .iter()
            .map(to_key_entry)
            .collect()
        })
    }

    fn key_version(&self, tenant: &Tenant, encoder: &str) -> Result<u64> {
        self.read(|tx| {
            Ok(tx
                .query_one(
                    "SELECT coalesce(max(seq), 0) FROM key_log WHERE tenant_id = $1 AND encoder = $2",
                    &[&tenant.as_str(), &encoder],
                )
                .map_err(db_err)?
                .get::<_, i64>(0) as u64)
        })
    }

    fn key_changes_since(
        &self,
        tenant: &Tenant,
        encoder: &str,
        version: u64,
    ) -> Result<(Vec<KeyChange>, u64)> {
        self.read(|tx| {
            let rows = tx
                .query(
                    "SELECT seq, key, op FROM key_log
                     WHERE tenant_id = $1 AND encoder = $2 AND seq > $3 ORDER BY seq",
                    &[&tenant.as_str(), &encoder, &(version as i64)],
                )
                .map_err(db_err)?;
            let mut last = version;
            let changes = rows
                .iter()
                .map(|r| {
                    last = r.get::<_, i64>(0) as u64;
                    let key = r.get::<_, i64>(1) as u64;
                    if r.get::<_, &str>(2) == "+" {
                        KeyChange::Added(key)
                    } else {
                        KeyChange::Removed(key)
                    }
                })
                .collect();
            Ok((changes, last))
        })
    }

    fn stats(&self, tenant: &Tenant) -> Result<StoreStats> {
        self.read(|tx| {
            let row = tx
                .query_one(
                    "SELECT (SELECT count(*) FROM concepts WHERE tenant_id = $1),
                            (SELECT count(*) FROM blobs WHERE tenant_id = $1),
                            (SELECT count(*) FROM embeddings WHERE tenant_id = $1)",
                    &[&tenant.as_str()],
                )
                .map_err(db_err)?;
            Ok(StoreStats {
                concepts: row.get::<_, i64>(0) as u64,
                images: row.get::<_, i64>(1) as u64,
                embeddings: row.get::<_, i64>(2) as u64,
            })
        })
    }

    fn encoders(&self, tenant: &Tenant) -> Result<Vec<(String, u64)>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT encoder, count(*) FROM embeddings WHERE tenant_id = $1
                     GROUP BY encoder ORDER BY encoder COLLATE \"C\"",
                    &[&tenant.as_str()],
                )
                .map_err(db_err)?
                .iter()
                .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
                .collect())
        })
    }

    fn search_keys(
        &self,
        tenant: &Tenant,
        encoder: &str,
        queries: &[Embedding],
        k: usize,
    ) -> Result<Option<Vec<Vec<KeyHit>>>> {
        if k == 0 || queries.is_empty() {
            return Ok(Some(vec![Vec::new(); queries.len()]));
        }
        let t = tenant.as_str();
        let limit = k as i64;
        self.read(|tx| {
            let (sql, indexed) = search_sql(tx, &self.options, t, encoder, k)?;
            let statement = tx.prepare(&sql).map_err(db_err)?;
            let mut out = Vec::with_capacity(queries.len());
            for query in queries {
                let vector = Vector::from(query.as_slice().to_vec());
                let rows = if indexed {
                    tx.query(&statement, &[&vector, &limit])
                } else {
                    tx.query(&statement, &[&vector, &limit, &t, &encoder])
                }
                .map_err(db_err)?;
                out.push(
                    rows.iter()
                        .map(|r| {
                            Ok(KeyHit {
                                score: (1.0 - r.get::<_, f64>(3)) as f32,
                                location: to_location(r)?,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                );
            }
            Ok(Some(out))
        })
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        self.tenants_with_concepts()
    }

    fn import_tenant(&self, tenant: &Tenant, dump: &TenantDump, replace: bool) -> Result<()> {
        self.import(tenant, dump, replace)
    }

    fn tenant_settings(&self, tenant: &Tenant) -> Result<BTreeMap<String, String>> {
        self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT key, value FROM tenant_settings WHERE tenant_id = $1",
                    &[&tenant.as_str()],
                )
                .map_err(db_err)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })
    }

    fn tenant_setting(&self, tenant: &Tenant, key: &str) -> Result<Option<String>> {
        self.read(|tx| get_setting(tx, tenant, key))
    }

    fn set_tenant_setting(&self, tenant: &Tenant, key: &str, value: Option<&str>) -> Result<()> {
        check_setting(key, value)?;
        self.write(tenant, |tx| put_setting(tx, tenant, key, value))
    }

    fn swap_tenant_setting(
        &self,
        tenant: &Tenant,
        key: &str,
        expected: Option<&str>,
        value: Option<&str>,
    ) -> Result<bool> {
        check_setting(key, value)?;
        // Under the tenant's lock: no other writer between the check and the write.
        self.write(tenant, |tx| {
            if get_setting(tx, tenant, key)?.as_deref() != expected {
                return Ok(false);
            }
            put_setting(tx, tenant, key, value)?;
            Ok(true)
        })
    }

    fn api_key_store(&self) -> Option<&dyn ApiKeyStore> {
        Some(self)
    }
}

/// The statement that searches (tenant, encoder) for `$1` (a vector), `$2` results (and, when
/// the tenant has no index of its own, `$3` tenant and `$4` encoder); true when it uses an
/// index. Sets the transaction's HNSW search breadth when it does.
fn search_sql(
    tx: &mut Transaction,
    options: &PgOptions,
    tenant: &str,
    encoder: &str,
    k: usize,
) -> Result<(String, bool)> {
    let index = tx
        .query_opt(
            "SELECT dim, predicate FROM tenant_indexes WHERE tenant_id = $1 AND encoder = $2",
            &[&tenant, &encoder],
        )
        .map_err(db_err)?;
    Ok(match index {
        // The predicate is the partial index's own (quoted by the server), written literally
        // so the planner can match this query to that index.
        Some(row) => {
            let (dim, predicate): (i32, &str) = (row.get(0), row.get(1));
            let ef = options.ef_search.max(k).min(1000);
            // Without sorting the only ordered plan left is the index: the planner's row
            // estimate (stale statistics right after a bulk load) cannot pick a full sort.
            tx.batch_execute(&format!(
                "SET LOCAL hnsw.ef_search = {ef}; SET LOCAL enable_sort = off"
            ))
            .map_err(db_err)?;
            (
                format!(
                    "SELECT key, sha256, region, (vector::vector({dim}) <=> $1) AS distance
                     FROM embeddings WHERE {predicate}
                     ORDER BY vector::vector({dim}) <=> $1 LIMIT $2"
                ),
                true,
            )
        }
        // Exact: the tenant's rows through the (tenant_id, encoder) btree, ranked.
        None => (
            "SELECT key, sha256, region, (vector <=> $1) AS distance
             FROM embeddings WHERE tenant_id = $3 AND encoder = $4
             ORDER BY vector <=> $1, key LIMIT $2"
                .to_owned(),
            false,
        ),
    })
}

fn get_setting(tx: &mut Transaction, tenant: &Tenant, key: &str) -> Result<Option<String>> {
    Ok(tx
        .query_opt(
            "SELECT value FROM tenant_settings WHERE tenant_id = $1 AND key = $2",
            &[&tenant.as_str(), &key],
        )
        .map_err(db_err)?
        .map(|r| r.get(0)))
}

/// Sets (or, with `None`, deletes) a setting, inside `tx`.
pub(crate) fn put_setting(
    tx: &mut Transaction,
    tenant: &Tenant,
    key: &str,
    value: Option<&str>,
) -> Result<()> {
    let t = tenant.as_str();
    match value {
        Some(value) => tx.execute(
            "INSERT INTO tenant_settings (tenant_id, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value",
            &[&t, &key, &value],
        ),
        None => tx.execute(
            "DELETE FROM tenant_settings WHERE tenant_id = $1 AND key = $2",
            &[&t, &key],
        ),
    }
    .map_err(db_err)?;
    Ok(())
}

/// The lock serialising changes to API keys.
const API_KEYS_LOCK: &str = "rap api keys";

fn to_api_key(row: &postgres::Row) -> Result<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        id: row.get(0),
        tenant: Tenant::new(row.get::<_, String>(1))?,
        created_at: row.get(2),
        revoked_at: row.get(3),
    })
}

impl ApiKeyStore for PgStore {
    fn add_api_key(&self, tenant: &Tenant, key: &NewApiKey) -> Result<ApiKeyInfo> {
        let created_at = now_ms();
        self.write_locked(API_KEYS_LOCK, |tx| {
            tx.execute(
                "INSERT INTO api_keys (id, tenant_id, hash, created_at) VALUES ($1, $2, $3, $4)",
                &[&key.id, &tenant.as_str(), &key.hash, &created_at],
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
            tx.query(
                "SELECT id, tenant_id, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
                &[],
            )
            .map_err(db_err)?
            .iter()
            .map(to_api_key)
            .collect()
        })
    }

    fn revoke_api_key(&self, id: &str) -> Result<ApiKeyInfo> {
        let id = key_id(id)?;
        self.write_locked(API_KEYS_LOCK, |tx| {
            let row = tx
                .query_opt(
                    "SELECT id, tenant_id, created_at, revoked_at FROM api_keys WHERE id = $1",
                    &[&id],
                )
                .map_err(db_err)?
                .ok_or_else(|| Error::not_found("API key", id.clone()))?;
            let mut info = to_api_key(&row)?;
            if info.revoked_at.is_some() {
                return Err(Error::Conflict(format!("API key {id} is already revoked")));
            }
            let now = now_ms();
            tx.execute(
                "UPDATE api_keys SET revoked_at = $2 WHERE id = $1",
                &[&id, &now],
            )
            .map_err(db_err)?;
            info.revoked_at = Some(now);
            Ok(info)
        })
    }

    fn tenant_for_key_hash(&self, hash: &str) -> Result<Option<Tenant>> {
        self.read(|tx| {
            tx.query_opt(
                "SELECT tenant_id FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
                &[&hash],
            )
            .map_err(db_err)?
            .map(|r| Tenant::new(r.get::<_, String>(0)))
            .transpose()
        })
    }

    fn has_active_api_keys(&self) -> Result<bool> {
        self.read(|tx| {
            Ok(tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)",
                    &[],
                )
                .map_err(db_err)?
                .get(0))
        })
    }

    fn export_api_keys(&self) -> Result<Vec<StoredApiKey>> {
        self.read(export_api_keys)
    }

    fn import_api_keys(&self, keys: &[StoredApiKey], replace: bool) -> Result<()> {
        // Under the keys' lock, so the check and the writes see the same table.
        self.write_locked(API_KEYS_LOCK, |tx| {
            for (key, action) in plan_import(keys, export_api_keys(tx)?, replace)? {
                let i = &key.info;
                let sql = match action {
                    ImportAction::Insert => {
                        "INSERT INTO api_keys (id, tenant_id, hash, created_at, revoked_at)
                         VALUES ($1, $2, $3, $4, $5)"
                    }
                    ImportAction::Overwrite => {
                        "UPDATE api_keys SET tenant_id = $2, hash = $3, created_at = $4,
                         revoked_at = $5 WHERE id = $1"
                    }
                };
                tx.execute(
                    sql,
                    &[
                        &i.id,
                        &i.tenant.as_str(),
                        &key.hash,
                        &i.created_at,
                        &i.revoked_at,
                    ],
                )
                .map_err(db_err)?;
            }
            Ok(())
        })
    }
}

fn export_api_keys(tx: &mut Transaction) -> Result<Vec<StoredApiKey>> {
    tx.query(
        "SELECT id, tenant_id, created_at, revoked_at, hash FROM api_keys ORDER BY created_at, id",
        &[],
    )
    .map_err(db_err)?
    .iter()
    .map(|row| {
        Ok(StoredApiKey {
            info: to_api_key(row)?,
            hash: row.get(4),
        })
    })
    .collect()
}
