//! [`ConceptStore::import_tenant`](rap_memory::ConceptStore::import_tenant) and
//! [`ConceptStore::tenants`](rap_memory::ConceptStore::tenants) for [`PgStore`]: a whole
//! tenant written in one transaction (migration), concepts keeping their ids and times, settings
//! their values.

use crate::external::ImageBytes;
use crate::{attach_image, bump_version, db_err, held_names, insert_name, PgStore, Role};
use postgres::Transaction;
use rap_core::{ConceptId, Error, ImageId, Result, Tenant};
use rap_memory::migrate::ConceptParts;
use rap_memory::rules::{self, plan_add};
use rap_memory::{ImageInput, TenantDump};

impl PgStore {
    pub(crate) fn tenants_with_concepts(&self) -> Result<Vec<Tenant>> {
        self.read(|tx| {
            tx.query(
                "SELECT tenant_id FROM concepts GROUP BY tenant_id ORDER BY tenant_id COLLATE \"C\"",
                &[],
            )
            .map_err(db_err)?
            .iter()
            .map(|r| Tenant::new(r.get::<_, String>(0)))
            .collect()
        })
    }

    pub(crate) fn import(&self, tenant: &Tenant, dump: &TenantDump, replace: bool) -> Result<()> {
        let by_id = rap_memory::migrate::check_dump(dump)?;
        let images: Vec<&ImageInput> = dump.images.iter().collect();
        let mut cleared = Vec::new();
        self.write_with_images(tenant, &images, |tx, bytes| {
            if replace {
                cleared = clear_tenant(tx, tenant)?;
            } else {
                let held: i64 = tx
                    .query_one(
                        "SELECT (SELECT count(*) FROM concepts WHERE tenant_id = $1)
                              + (SELECT count(*) FROM blobs WHERE tenant_id = $1)",
                        &[&tenant.as_str()],
                    )
                    .map_err(db_err)?
                    .get(0);
                if held > 0 {
                    return Err(Error::Conflict(format!(
                        "tenant {tenant} already holds a memory here"
                    )));
                }
            }
            for concept in &dump.concepts {
                let parts = rap_memory::migrate::concept_parts(concept, &by_id)?;
                insert_concept_as(
                    tx,
                    tenant,
                    &concept.id,
                    &parts,
                    (concept.created_at, concept.updated_at),
                    bytes,
                )?;
            }
            // check_dump refused an (image, region) given twice, the one case put_keys leaves
            // to the caller.
            for (encoder, keys) in &dump.keys {
                if crate::bulk::put_keys(tx, tenant.as_str(), encoder, keys)?.is_none() {
                    return Err(Error::storage(format!(
                        "encoder {encoder}: a key given twice slipped past the dump check"
                    )));
                }
            }
            for (key, value) in &dump.settings {
                crate::put_setting(tx, tenant, key, Some(value))?;
            }
            Ok(())
        })?;
        // Objects of images the replaced memory had and the new one has not.
        self.drop_unreferenced(tenant, &cleared);
        for (encoder, _) in &dump.keys {
            self.ensure_tenant_index(tenant, encoder);
        }
        Ok(())
    }
}

/// Inserts a concept with a given id and (created, updated) times, its reference images and
/// its negative examples (after them).
fn insert_concept_as(
    tx: &mut Transaction,
    tenant: &Tenant,
    id: &ConceptId,
    parts: &ConceptParts,
    (created_at, updated_at): (i64, i64),
    bytes: ImageBytes,
) -> Result<()> {
    bump_version(tx, tenant)?;
    let t = tenant.as_str();
    let new = &parts.new;
    let held = held_names(tx, tenant, None, &rules::add_keys(new))?;
    let plan = plan_add(new, parts.refs.iter().copied(), &held);
    tx.execute(
        "INSERT INTO tenants (tenant_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&t, &created_at],
    )
    .map_err(db_err)?;
    // A concept id in use is reported before anything the plan refuses (as the embedded
    // store does).
    tx.execute(
        "INSERT INTO concepts (tenant_id, id, name, category, info, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &t,
            &id.0,
            &rap_core::strip_brackets(new.name.trim()),
            &new.category.trim(),
            &new.info,
            &created_at,
            &updated_at,
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
        attach_image(tx, tenant, id, image, pos as i32, bytes, Role::Reference)?;
        next = next.max(pos as i32 + 1);
    }
    for (i, image) in parts.negatives.iter().enumerate() {
        attach_image(
            tx,
            tenant,
            id,
            image,
            next + i as i32,
            bytes,
            Role::Negative,
        )?;
    }
    Ok(())
}

/// Deletes everything a tenant holds (its keys' removals logged); returns the images whose
/// rows it deleted.
fn clear_tenant(tx: &mut Transaction, tenant: &Tenant) -> Result<Vec<ImageId>> {
    bump_version(tx, tenant)?;
    let t = tenant.as_str();
    tx.execute("DELETE FROM concepts WHERE tenant_id = $1", &[&t])
        .map_err(db_err)?;
    tx.execute("DELETE FROM tenant_settings WHERE tenant_id = $1", &[&t])
        .map_err(db_err)?;
    tx.execute(
        "WITH gone AS (DELETE FROM embeddings WHERE tenant_id = $1 RETURNING encoder, key)
         INSERT INTO key_log (tenant_id, encoder, key, op)
         SELECT $1, encoder, key, '-' FROM gone ORDER BY key",
        &[&t],
    )
    .map_err(db_err)?;
    Ok(tx
        .query(
            "DELETE FROM blobs WHERE tenant_id = $1 RETURNING sha256",
            &[&t],
        )
        .map_err(db_err)?
        .iter()
        .map(|r| ImageId(r.get(0)))
        .collect())
}
