//! Image bytes outside the database: [`PgStore`] with a [`BlobStore`] (S3, see [`crate::s3`]).
//!
//! With a blob store, a `blobs` row keeps the image's metadata and `data IS NULL`; the bytes
//! are the object `TENANT/SHA256`. The rows stay the reference counts, and the order of writes
//! keeps every row's object present:
//! - adding: under the tenant's advisory lock, inside the transaction that inserts the rows,
//!   every image without a row yet is written to the store first (content-addressed, so
//!   writing it again is harmless). A failed write of an object fails the add before any row
//!   is written; a failed transaction deletes the objects it wrote that no row uses.
//! - deleting: the transaction that drops an image's last reference deletes the row; only
//!   after it commits is the object deleted, again under the tenant's lock and only if no
//!   row has come back meanwhile ([`PgStore::drop_unreferenced`]).
//!
//! A crash between a commit and a delete leaves an orphan object, never a row without bytes;
//! [`PgStore::collect_orphan_blobs`] (`rap blobs gc`) sweeps orphans, also under the lock.
//!
//! Rows written with their bytes in `data` (a database used without a blob store) keep being
//! read from there.

use crate::{db_err, PgStore};
use postgres::Transaction;
use rap_core::{Error, ImageId, Result, Tenant};
use rap_memory::{BlobStore, ImageInput};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Where a write keeps the bytes of the images it attaches: [`PgStore::write_with_images`]
/// hands it to its closure, which passes it down to `attach_image`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageBytes {
    /// In the `blobs` row's `data` (a store without a blob store).
    InRow,
    /// In the blob store, already written; the row's `data` stays NULL.
    InBlobStore,
}

/// What [`PgStore::collect_orphan_blobs`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobGcReport {
    /// Objects in the store (under its prefix, in the `TENANT/SHA256` layout).
    pub objects: usize,
    /// Objects no row refers to, now deleted: (tenant, sha256).
    pub removed: Vec<(String, String)>,
    /// Rows whose object is missing (should never happen; their images cannot be read).
    pub missing: Vec<(String, String)>,
}

impl PgStore {
    /// Keeps image bytes in `blobs` (an S3 bucket) instead of the database from now on.
    pub fn with_blob_store(mut self, blobs: Arc<dyn BlobStore>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// The blob store holding the image bytes, if the bytes are not in the database.
    pub fn blob_store(&self) -> Option<&dyn BlobStore> {
        self.blobs.as_deref()
    }

    /// A write of `tenant` that attaches `images`: with a blob store, their objects are
    /// written first (under the tenant's lock, inside the transaction) and rows get no bytes;
    /// if the write fails, the objects it wrote that no row uses are deleted again. `f` is told
    /// where the bytes of the images it attaches go.
    pub(crate) fn write_with_images<T>(
        &self,
        tenant: &Tenant,
        images: &[&ImageInput],
        f: impl FnOnce(&mut Transaction, ImageBytes) -> Result<T>,
    ) -> Result<T> {
        let Some(blobs) = self.blobs.clone() else {
            return self.write(tenant, |tx| f(tx, ImageBytes::InRow));
        };
        let mut uploaded = Vec::new();
        let out = self.write(tenant, |tx| {
            upload_missing(tx, blobs.as_ref(), tenant, images, &mut uploaded)?;
            f(tx, ImageBytes::InBlobStore)
        });
        if out.is_err() {
            self.drop_unreferenced(tenant, &uploaded);
        }
        out
    }

    /// After a commit that may have dropped the last reference to some of `images`: deletes
    /// the objects of those that have no row now (under the tenant's lock, so an add of the
    /// same image cannot slip in between the check and the delete). A failure leaves orphans
    /// for [`Self::collect_orphan_blobs`]; it is logged, not returned (the write committed).
    pub(crate) fn drop_unreferenced(&self, tenant: &Tenant, images: &[ImageId]) {
        let Some(blobs) = self.blobs.as_deref() else {
            return;
        };
        if images.is_empty() {
            return;
        }
        if let Err(e) = self.delete_if_unused(blobs, tenant, images) {
            tracing::warn!(tenant = %tenant, "image objects left behind (rap blobs gc removes them): {e}");
        }
    }

    fn delete_if_unused(
        &self,
        blobs: &dyn BlobStore,
        tenant: &Tenant,
        images: &[ImageId],
    ) -> Result<usize> {
        let shas: Vec<&str> = images.iter().map(|i| i.0.as_str()).collect();
        self.write(tenant, |tx| {
            let used: HashSet<String> = tx
                .query(
                    "SELECT sha256 FROM blobs WHERE tenant_id = $1 AND sha256 = ANY($2)",
                    &[&tenant.as_str(), &shas],
                )
                .map_err(db_err)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut deleted = 0;
            for sha in shas.iter().copied().collect::<HashSet<_>>() {
                if !used.contains(sha) {
                    blobs.delete(tenant, sha)?;
                    deleted += 1;
                }
            }
            Ok(deleted)
        })
    }

    /// The bytes of a row: from the database, or from the blob store when the row has none.
    pub(crate) fn row_bytes(
        &self,
        tenant: &Tenant,
        image: &ImageId,
        data: Option<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        if let Some(data) = data {
            return Ok(data);
        }
        match self.blobs.as_deref() {
            Some(blobs) => blobs.get(tenant, &image.0),
            None => Err(Error::storage(format!(
                "the bytes of image {} are in a blob store, and none is configured \
                 (set RAP_BLOB_STORE=s3://BUCKET/PREFIX and the AWS_* variables)",
                image.0
            ))),
        }
    }

    /// Deletes every object of the blob store that no row refers to (left by a crash between
    /// a commit and its delete, or by a failed cleanup), and lists rows whose object is
    /// missing. Each deletion re-checks under the tenant's lock, so a concurrent add is safe.
    pub fn collect_orphan_blobs(&self) -> Result<BlobGcReport> {
        let Some(blobs) = self.blobs.as_deref() else {
            return Err(Error::invalid(
                "no blob store is configured: the image bytes are in the database \
                 (set RAP_BLOB_STORE=s3://BUCKET/PREFIX)",
            ));
        };
        let objects = blobs.list()?;
        let mut by_tenant: BTreeMap<Tenant, Vec<String>> = BTreeMap::new();
        for (tenant, sha) in &objects {
            by_tenant
                .entry(tenant.clone())
                .or_default()
                .push(sha.clone());
        }
        let mut report = BlobGcReport {
            objects: objects.len(),
            ..Default::default()
        };
        for (tenant, shas) in &by_tenant {
            let used: HashSet<String> = self.read(|tx| {
                Ok(tx
                    .query(
                        "SELECT sha256 FROM blobs WHERE tenant_id = $1 AND sha256 = ANY($2)",
                        &[&tenant.as_str(), shas],
                    )
                    .map_err(db_err)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect())
            })?;
            let orphans: Vec<ImageId> = shas
                .iter()
                .filter(|s| !used.contains(*s))
                .map(|s| ImageId(s.clone()))
                .collect();
            if orphans.is_empty() {
                continue;
            }
            let before = report.removed.len();
            // Re-checked under the lock: only those still without a row are deleted.
            let used_now: HashSet<String> = self.write(tenant, |tx| {
                let shas: Vec<&str> = orphans.iter().map(|i| i.0.as_str()).collect();
                let used: HashSet<String> = tx
                    .query(
                        "SELECT sha256 FROM blobs WHERE tenant_id = $1 AND sha256 = ANY($2)",
                        &[&tenant.as_str(), &shas],
                    )
                    .map_err(db_err)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for sha in &shas {
                    if !used.contains(*sha) {
                        blobs.delete(tenant, sha)?;
                    }
                }
                Ok(used)
            })?;
            report.removed.extend(
                orphans
                    .iter()
                    .filter(|i| !used_now.contains(&i.0))
                    .map(|i| (tenant.to_string(), i.0.clone())),
            );
            tracing::info!(tenant = %tenant, removed = report.removed.len() - before, "orphan image objects deleted");
        }
        let listed: HashSet<(String, String)> = objects
            .into_iter()
            .map(|(t, s)| (t.to_string(), s))
            .collect();
        let rows: Vec<(String, String)> = self.read(|tx| {
            Ok(tx
                .query(
                    "SELECT tenant_id, sha256 FROM blobs WHERE data IS NULL
                     ORDER BY tenant_id, sha256",
                    &[],
                )
                .map_err(db_err)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })?;
        report.missing = rows.into_iter().filter(|r| !listed.contains(r)).collect();
        Ok(report)
    }
}

/// Writes the objects of those `images` that have no row yet (under the tenant's lock: the
/// caller's transaction holds it), recording what it wrote.
fn upload_missing(
    tx: &mut Transaction,
    blobs: &dyn BlobStore,
    tenant: &Tenant,
    images: &[&ImageInput],
    uploaded: &mut Vec<ImageId>,
) -> Result<()> {
    if images.is_empty() {
        return Ok(());
    }
    let shas: Vec<&str> = images.iter().map(|i| i.id.0.as_str()).collect();
    let stored: HashSet<String> = tx
        .query(
            "SELECT sha256 FROM blobs WHERE tenant_id = $1 AND sha256 = ANY($2)",
            &[&tenant.as_str(), &shas],
        )
        .map_err(db_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut seen = HashSet::new();
    for image in images {
        if stored.contains(&image.id.0) || !seen.insert(&image.id) {
            continue;
        }
        blobs.put(tenant, &image.id.0, &image.bytes).map_err(|e| {
            let why = match e {
                Error::Storage { message, .. } => message,
                other => other.to_string(),
            };
            Error::storage(format!(
                "image {} was not stored (nothing was written): {why}",
                &image.id.0[..12.min(image.id.0.len())]
            ))
        })?;
        uploaded.push(image.id.clone());
    }
    Ok(())
}
