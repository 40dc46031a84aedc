//! The conformance suite (`rap_memory::testing`, every case of it) on PostgreSQL, and on
//! PostgreSQL with the image bytes in an S3 bucket (real servers, see `common`); a second
//! handle is a second `PgStore` on the same database (and bucket), as a second replica.

use crate::common;

use rap_memory::testing::conformance::{
    a_ten_concept_tenant_among_many_gets_exactly_its_own_top_k, t,
};
use rap_memory_postgres::PgStore;

fn postgres() -> (common::TestDb, PgStore) {
    let db = common::TestDb::new();
    let store = db.store();
    (db, store)
}

fn postgres_again(db: &common::TestDb) -> PgStore {
    db.store()
}

/// PostgreSQL with the image bytes in an S3 bucket (a real S3 server, see `common`).
fn postgres_s3() -> ((common::TestDb, common::TestBucket), PgStore) {
    let db = common::TestDb::new();
    let bucket = common::TestBucket::new();
    let store = db.store().with_blob_store(bucket.blob_store("conformance"));
    ((db, bucket), store)
}

fn postgres_s3_again((db, bucket): &(common::TestDb, common::TestBucket)) -> PgStore {
    db.store().with_blob_store(bucket.blob_store("conformance"))
}

// The property test's sequences reopen the store at every step (a new connection pool), about
// a second a sequence here: a few of them in CI (`RAP_PROPTEST_CASES` runs more).
rap_memory::conformance_suite!(
    postgres_pgvector,
    postgres(),
    postgres_again,
    property_cases = 4
);
rap_memory::conformance_suite!(
    postgres_pgvector_s3,
    postgres_s3(),
    postgres_s3_again,
    property_cases = 3
);

/// The same with a low HNSW threshold, so that the large neighbour is searched through its own
/// HNSW index while the 10-concept tenant is scanned exactly.
#[test]
fn postgres_pgvector_with_indexed_neighbours_ten_concept_tenant() {
    let db = common::TestDb::new();
    let store = db.store_with(rap_memory_postgres::PgOptions {
        hnsw_above: 300,
        ..rap_memory_postgres::PgOptions::default()
    });
    a_ten_concept_tenant_among_many_gets_exactly_its_own_top_k(&store);
    assert!(store.tenant_index(&t("large"), "enc").unwrap().is_some());
    assert!(store.tenant_index(&t("ten"), "enc").unwrap().is_none());
}
