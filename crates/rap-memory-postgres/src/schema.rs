//! The PostgreSQL schema and its versioned migrations.
//!
//! Every table carries `tenant_id`, and every primary key and index leads with it, so the
//! schema can be distributed by tenant (Citus `create_distributed_table(TABLE, 'tenant_id')`,
//! colocated) or hash-partitioned by it without change. The exceptions are `api_keys` (a key
//! is how a request finds its tenant, so it is looked up by hash: a Citus *reference* table)
//! and the bookkeeping table `rap_schema_migrations`.
//!
//! # Distributing it (Citus), when one primary is not enough
//! ```sql
//! SELECT create_reference_table('api_keys');              -- looked up by hash, small
//! SELECT create_distributed_table('tenants', 'tenant_id');
//! SELECT create_distributed_table(t, 'tenant_id', colocate_with => 'tenants')
//!   FROM unnest(ARRAY['concepts', 'names', 'blobs', 'concept_images', 'embeddings',
//!                     'key_log', 'tenant_indexes', 'tenant_settings',
//!                     'memory_versions']) AS t;
//! ```
//! Every statement of a store method filters on one `tenant_id`, so Citus routes each
//! transaction to the one shard group holding that tenant (the foreign keys all include
//! `tenant_id`, as colocation requires). Two things to revisit then: the advisory lock that
//! serialises a tenant's writers is taken where the transaction runs (fine while writes go
//! through the coordinator; with writes from every node it should become a `SELECT .. FOR
//! UPDATE` of the tenant's `tenants` row), and a large tenant's partial HNSW index is created
//! on every shard (empty on all but its own).
//!
//! Migrations are numbered from 1 and recorded in `rap_schema_migrations`; [`migrate`] applies
//! the missing ones at start in one transaction (under an advisory lock, so replicas starting
//! together migrate once) and refuses a database whose schema is newer than this build.

use crate::db_err;
use postgres::Client;
use rap_core::{Error, Result};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = 4;

/// An arbitrary constant naming the advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x0072_6170_5f6d_6967;

/// Migrations by version: `MIGRATIONS[0]` brings an empty database to version 1.
const MIGRATIONS: &[&str] = &[
    // 1: concepts, names, images, embeddings (pgvector), the key log, API keys, tenants.
    "
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE tenants (
    tenant_id text PRIMARY KEY,
    created_at bigint NOT NULL
);

CREATE TABLE concepts (
    tenant_id text NOT NULL,
    id text NOT NULL,
    name text NOT NULL,
    category text NOT NULL,
    info text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX concepts_by_name ON concepts (tenant_id, lower(name));

-- A concept's name and each alias; `key` is the lowercase form: one namespace per tenant.
CREATE TABLE names (
    tenant_id text NOT NULL,
    key text NOT NULL,
    concept_id text NOT NULL,
    display text NOT NULL,
    is_alias boolean NOT NULL,
    PRIMARY KEY (tenant_id, key),
    FOREIGN KEY (tenant_id, concept_id) REFERENCES concepts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX names_by_concept ON names (tenant_id, concept_id);

-- Image bytes, once per tenant and content; a row lives exactly while a concept_images row
-- of its tenant refers to it (the reference count is that number of rows).
CREATE TABLE blobs (
    tenant_id text NOT NULL,
    sha256 text NOT NULL,
    data bytea NOT NULL,
    size bigint NOT NULL,
    format text NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
);

CREATE TABLE concept_images (
    tenant_id text NOT NULL,
    concept_id text NOT NULL,
    sha256 text NOT NULL,
    position integer NOT NULL,
    PRIMARY KEY (tenant_id, concept_id, sha256),
    FOREIGN KEY (tenant_id, concept_id) REFERENCES concepts (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, sha256) REFERENCES blobs (tenant_id, sha256)
);
CREATE INDEX concept_images_by_blob ON concept_images (tenant_id, sha256);

-- Keys: one embedding per (image, region, encoder). `key` comes from one sequence and is never
-- reused. `vector` has no fixed dimension (encoders differ); HNSW indexes cast it to theirs.
CREATE SEQUENCE embedding_keys;
CREATE TABLE embeddings (
    tenant_id text NOT NULL,
    key bigint NOT NULL DEFAULT nextval('embedding_keys'),
    encoder text NOT NULL,
    sha256 text NOT NULL,
    region text NOT NULL,
    dim integer NOT NULL,
    vector vector NOT NULL,
    PRIMARY KEY (tenant_id, key),
    UNIQUE (tenant_id, encoder, sha256, region),
    FOREIGN KEY (tenant_id, sha256) REFERENCES blobs (tenant_id, sha256)
);
CREATE INDEX embeddings_by_encoder ON embeddings (tenant_id, encoder, key);
CREATE INDEX embeddings_by_blob ON embeddings (tenant_id, sha256);

-- Every key added (+) or removed (-), in commit order per tenant (writers of a tenant hold its
-- advisory lock, so sequence order is commit order within a tenant).
CREATE SEQUENCE key_log_seq;
CREATE TABLE key_log (
    tenant_id text NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('key_log_seq'),
    encoder text NOT NULL,
    key bigint NOT NULL,
    op text NOT NULL CHECK (op IN ('+', '-')),
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX key_log_by_encoder ON key_log (tenant_id, encoder, seq);

-- The HNSW index of a large (tenant, encoder): a partial index over exactly its keys.
CREATE TABLE tenant_indexes (
    tenant_id text NOT NULL,
    encoder text NOT NULL,
    dim integer NOT NULL,
    index_name text NOT NULL,
    predicate text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (tenant_id, encoder)
);

CREATE TABLE api_keys (
    id text PRIMARY KEY,
    tenant_id text NOT NULL,
    hash text NOT NULL UNIQUE,
    created_at bigint NOT NULL,
    revoked_at bigint
);
",
    // 2: image bytes may live in a blob store (S3): a row without `data` has its bytes there.
    "
ALTER TABLE blobs ALTER COLUMN data DROP NOT NULL;
",
    // 3: a tenant's settings (the encoder its keys come from...), shared by every replica.
    "
CREATE TABLE tenant_settings (
    tenant_id text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
",
    // 4: negative examples ("that's not Bo"), and each tenant's memory version, raised by
    // every change of its concepts (processes that keep concepts in memory compare it).
    "
ALTER TABLE concept_images ADD COLUMN negative boolean NOT NULL DEFAULT false;
CREATE TABLE memory_versions (
    tenant_id text PRIMARY KEY,
    version bigint NOT NULL
);
",
];

/// Brings the database to [`SCHEMA_VERSION`], or refuses one from a newer `rap`.
pub fn migrate(client: &mut Client) -> Result<i32> {
    let mut tx = client.transaction().map_err(db_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(db_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS rap_schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .map_err(db_err)?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM rap_schema_migrations",
            &[],
        )
        .map_err(db_err)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(Error::storage(format!(
            "the database was written by a newer rap (schema version {current}, this build knows {SCHEMA_VERSION}); upgrade rap"
        )));
    }
    for version in current + 1..=SCHEMA_VERSION {
        tx.batch_execute(MIGRATIONS[(version - 1) as usize])
            .map_err(|e| Error::storage(format!("migration {version}: {}", crate::describe(&e))))?;
        tx.execute(
            "INSERT INTO rap_schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)?;
    if current < SCHEMA_VERSION {
        tracing::info!(from = current, to = SCHEMA_VERSION, "database migrated");
    }
    Ok(SCHEMA_VERSION)
}
