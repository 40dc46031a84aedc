//! The photo library ([`crate::library`]) in the embedded store.
//!
//! # Tables (schema version 5) and their invariants
//! - `library_photos(id, tenant, path, size, mtime_ms, sha256, width, height, encoder)`: one
//!   row per indexed photo file; `(tenant, path)` is unique. `id` is never reused
//!   (AUTOINCREMENT), so a region can never point at another photo.
//! - `library_regions(id, photo_id, x1, y1, x2, y2, vector)`: the photo's regions, box in the
//!   full photo's pixels and the embedding as little-endian f32 (unit length); deleted with
//!   their photo (`ON DELETE CASCADE`). A photo row and its regions are always written in the
//!   same transaction, so a photo is never half indexed.
//! - `library_roots(tenant, path)`: the folders `rap library add` was given.

use super::{db_err, SqliteStore};
use crate::library::{
    LibraryPhoto, LibraryRegion, LibraryStats, LibraryStore, NewLibraryPhoto, PhotoFile,
};
use rap_core::{BoundingBox, Embedding, Error, Result, Tenant};
use rusqlite::{params, OptionalExtension, Transaction};

/// Version 4 -> 5: the photo library.
pub(super) const SCHEMA_V5: &str = "
CREATE TABLE IF NOT EXISTS library_photos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    encoder TEXT NOT NULL,
    UNIQUE (tenant, path)
);
CREATE INDEX IF NOT EXISTS library_photos_by_hash ON library_photos(tenant, sha256);
CREATE TABLE IF NOT EXISTS library_regions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    photo_id INTEGER NOT NULL REFERENCES library_photos(id) ON DELETE CASCADE,
    x1 REAL NOT NULL,
    y1 REAL NOT NULL,
    x2 REAL NOT NULL,
    y2 REAL NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS library_regions_by_photo ON library_regions(photo_id);
CREATE TABLE IF NOT EXISTS library_roots (
    tenant TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (tenant, path)
);
";

const PHOTO_COLUMNS: &str = "p.id, p.path, p.size, p.mtime_ms, p.sha256, p.width, p.height, \
     p.encoder, (SELECT count(*) FROM library_regions r WHERE r.photo_id = p.id)";

fn photo_row(r: &rusqlite::Row) -> rusqlite::Result<LibraryPhoto> {
    Ok(LibraryPhoto {
        id: r.get::<_, i64>(0)? as u64,
        path: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        mtime_ms: r.get(3)?,
        sha256: r.get(4)?,
        width: r.get::<_, i64>(5)? as u32,
        height: r.get::<_, i64>(6)? as u32,
        encoder: r.get(7)?,
        regions: r.get::<_, i64>(8)? as u32,
    })
}

fn region_row(r: &rusqlite::Row) -> rusqlite::Result<(i64, [f64; 4], Vec<u8>)> {
    Ok((
        r.get(0)?,
        [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
        r.get(5)?,
    ))
}

fn to_region((photo, b, vector): (i64, [f64; 4], Vec<u8>)) -> Result<LibraryRegion> {
    Ok(LibraryRegion {
        photo: photo as u64,
        bbox: BoundingBox::new(b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32),
        embedding: Embedding::from_le_bytes(&vector)?,
    })
}

fn photo_by_id(tx: &Transaction, tenant: &Tenant, id: i64) -> Result<LibraryPhoto> {
    tx.query_row(
        &format!("SELECT {PHOTO_COLUMNS} FROM library_photos p WHERE p.tenant = ?1 AND p.id = ?2"),
        params![tenant.as_str(), id],
        photo_row,
    )
    .optional()
    .map_err(db_err)?
    .ok_or_else(|| Error::not_found("library photo", id.to_string()))
}

/// Inserts the photo row for `file` (replacing any at its path, regions included); its id.
fn insert_photo(
    tx: &Transaction,
    tenant: &Tenant,
    file: &PhotoFile,
    sha256: &str,
    (width, height): (u32, u32),
    encoder: &str,
) -> Result<i64> {
    tx.execute(
        "DELETE FROM library_photos WHERE tenant = ?1 AND path = ?2",
        params![tenant.as_str(), file.path],
    )
    .map_err(db_err)?;
    tx.execute(
        "INSERT INTO library_photos (tenant, path, size, mtime_ms, sha256, width, height, encoder)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            tenant.as_str(),
            file.path,
            file.size as i64,
            file.mtime_ms,
            sha256,
            width,
            height,
            encoder
        ],
    )
    .map_err(db_err)?;
    Ok(tx.last_insert_rowid())
}

impl LibraryStore for SqliteStore {
    fn library_photos(&self, tenant: &Tenant) -> Result<Vec<LibraryPhoto>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {PHOTO_COLUMNS} FROM library_photos p WHERE p.tenant = ?1 ORDER BY p.path"
                ))
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant.as_str()], photo_row)
                .map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
    }

    fn library_photo(&self, tenant: &Tenant, path: &str) -> Result<Option<LibraryPhoto>> {
        self.read(|tx| {
            tx.query_row(
                &format!(
                    "SELECT {PHOTO_COLUMNS} FROM library_photos p WHERE p.tenant = ?1 AND p.path = ?2"
                ),
                params![tenant.as_str(), path],
                photo_row,
            )
            .optional()
            .map_err(db_err)
        })
    }

    fn library_photos_by_id(&self, tenant: &Tenant, ids: &[u64]) -> Result<Vec<LibraryPhoto>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {PHOTO_COLUMNS} FROM library_photos p WHERE p.tenant = ?1 AND p.id = ?2"
                ))
                .map_err(db_err)?;
            let mut out = Vec::with_capacity(ids.len());
            for &id in ids {
                if let Some(p) = stmt
                    .query_row(params![tenant.as_str(), id as i64], photo_row)
                    .optional()
                    .map_err(db_err)?
                {
                    out.push(p);
                }
            }
            Ok(out)
        })
    }

    fn put_library_photo(&self, tenant: &Tenant, photo: &NewLibraryPhoto) -> Result<LibraryPhoto> {
        self.write(|tx| {
            let id = insert_photo(
                tx,
                tenant,
                &photo.file,
                &photo.sha256,
                (photo.width, photo.height),
                &photo.encoder,
            )?;
            let mut stmt = tx
                .prepare(
                    "INSERT INTO library_regions (photo_id, x1, y1, x2, y2, vector)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db_err)?;
            for (b, embedding) in &photo.regions {
                stmt.execute(params![
                    id,
                    b.x1 as f64,
                    b.y1 as f64,
                    b.x2 as f64,
                    b.y2 as f64,
                    embedding.to_le_bytes()
                ])
                .map_err(db_err)?;
            }
            photo_by_id(tx, tenant, id)
        })
    }

    fn copy_library_photo(
        &self,
        tenant: &Tenant,
        from: u64,
        file: &PhotoFile,
    ) -> Result<LibraryPhoto> {
        self.write(|tx| {
            let source = photo_by_id(tx, tenant, from as i64)?;
            if source.path == file.path {
                // The same file touched: only its size and time change.
                tx.execute(
                    "UPDATE library_photos SET size = ?1, mtime_ms = ?2 WHERE id = ?3",
                    params![file.size as i64, file.mtime_ms, from as i64],
                )
                .map_err(db_err)?;
                return photo_by_id(tx, tenant, from as i64);
            }
            let id = insert_photo(
                tx,
                tenant,
                file,
                &source.sha256,
                (source.width, source.height),
                &source.encoder,
            )?;
            tx.execute(
                "INSERT INTO library_regions (photo_id, x1, y1, x2, y2, vector)
                 SELECT ?1, x1, y1, x2, y2, vector FROM library_regions WHERE photo_id = ?2
                 ORDER BY id",
                params![id, from as i64],
            )
            .map_err(db_err)?;
            photo_by_id(tx, tenant, id)
        })
    }

    fn remove_library_photos(&self, tenant: &Tenant, ids: &[u64]) -> Result<usize> {
        self.write(|tx| {
            let mut removed = 0;
            for &id in ids {
                removed += tx
                    .execute(
                        "DELETE FROM library_photos WHERE tenant = ?1 AND id = ?2",
                        params![tenant.as_str(), id as i64],
                    )
                    .map_err(db_err)?;
            }
            Ok(removed)
        })
    }

    fn library_regions(&self, tenant: &Tenant, encoder: &str) -> Result<Vec<LibraryRegion>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT r.photo_id, r.x1, r.y1, r.x2, r.y2, r.vector
                     FROM library_regions r JOIN library_photos p ON p.id = r.photo_id
                     WHERE p.tenant = ?1 AND p.encoder = ?2 ORDER BY r.id",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant.as_str(), encoder], region_row)
                .map_err(db_err)?;
            rows.map(|r| to_region(r.map_err(db_err)?)).collect()
        })
    }

    fn library_photo_regions(&self, tenant: &Tenant, photo: u64) -> Result<Vec<LibraryRegion>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(
                    "SELECT r.photo_id, r.x1, r.y1, r.x2, r.y2, r.vector
                     FROM library_regions r JOIN library_photos p ON p.id = r.photo_id
                     WHERE p.tenant = ?1 AND p.id = ?2 ORDER BY r.id",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant.as_str(), photo as i64], region_row)
                .map_err(db_err)?;
            rows.map(|r| to_region(r.map_err(db_err)?)).collect()
        })
    }

    fn library_roots(&self, tenant: &Tenant) -> Result<Vec<String>> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare("SELECT path FROM library_roots WHERE tenant = ?1 ORDER BY path")
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![tenant.as_str()], |r| r.get(0))
                .map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(db_err)
        })
    }

    fn add_library_root(&self, tenant: &Tenant, root: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO library_roots (tenant, path) VALUES (?1, ?2)",
                params![tenant.as_str(), root],
            )
            .map_err(db_err)?;
            Ok(())
        })
    }

    fn library_stats(&self, tenant: &Tenant) -> Result<LibraryStats> {
        self.read(|tx| {
            let (photos, regions): (i64, i64) = tx
                .query_row(
                    "SELECT count(*), coalesce(sum((SELECT count(*) FROM library_regions r
                                                    WHERE r.photo_id = p.id)), 0)
                     FROM library_photos p WHERE p.tenant = ?1",
                    params![tenant.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(db_err)?;
            Ok(LibraryStats {
                photos: photos as u64,
                regions: regions as u64,
            })
        })
    }
}
