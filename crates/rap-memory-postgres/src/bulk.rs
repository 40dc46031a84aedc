//! Set-based writes for [`ConceptStore::add_concepts`](rap_memory::ConceptStore::add_concepts)
//! and [`ConceptStore::put_keys`](rap_memory::ConceptStore::put_keys): a batch of concepts or
//! keys costs a handful of statements (arrays bound once, `unnest`ed by the server) instead of
//! several round trips per row, which is what bounded bulk loads to about 100 concepts/s.
//!
//! Each function checks first whether its batch is the plain case (each concept one that
//! `rap_memory::rules::plan_add` accepts, with names that clash with nothing else in the batch
//! or the tenant; no (image, region) twice among the keys). If not it
//! returns `None` having written nothing, and the caller runs the one-row-at-a-time path in the
//! same transaction, which finds the problem and reports it exactly as a single add would (or,
//! for keys given twice, keeps the last): errors and results are the same either way.

use crate::external::ImageBytes;
use crate::{attach_image, db_err, now_ms, region_to_text, Role};
use pgvector::Vector;
use postgres::Transaction;
use rap_core::{
    Concept, ConceptId, ConceptImage, Embedding, Error, ImageId, NewConcept, Region, Result,
};
use rap_memory::rules::plan_add;
use rap_memory::ImageInput;
use std::collections::{HashMap, HashSet};

/// Inserts the concepts in a few statements; `None` (nothing written) when one of them needs
/// the careful path (an invalid or clashing name or alias, a concept without images).
pub(crate) fn insert_concepts(
    tx: &mut Transaction,
    tenant: &rap_core::Tenant,
    concepts: &[(NewConcept, Vec<ImageInput>)],
    bytes: ImageBytes,
) -> Result<Option<Vec<ConceptId>>> {
    let t = tenant.as_str();
    // Each concept as a single add would write it, as if the tenant held nothing else.
    let mut plans = Vec::with_capacity(concepts.len());
    for (new, images) in concepts {
        match plan_add(new, images, &[]) {
            Ok(plan) => plans.push(plan),
            Err(_) => return Ok(None),
        }
    }
    // Every name and alias: (lowercase key, display, concept index, is_alias).
    let names: Vec<(&str, &str, usize, bool)> = plans
        .iter()
        .enumerate()
        .flat_map(|(i, plan)| {
            plan.names
                .iter()
                .map(move |c| (c.key.as_str(), c.display.as_str(), i, c.is_alias))
        })
        .collect();
    let mut seen = HashSet::with_capacity(names.len());
    if !names.iter().all(|n| seen.insert(n.0)) {
        return Ok(None);
    }
    let keys: Vec<&str> = names.iter().map(|n| n.0).collect();
    let taken = tx
        .query_opt(
            "SELECT 1 FROM names WHERE tenant_id = $1 AND key = ANY($2) LIMIT 1",
            &[&t, &keys],
        )
        .map_err(db_err)?;
    if taken.is_some() {
        return Ok(None);
    }

    let now = now_ms();
    let ids: Vec<ConceptId> = concepts
        .iter()
        .map(|_| ConceptId(uuid::Uuid::now_v7().to_string()))
        .collect();
    tx.execute(
        "INSERT INTO tenants (tenant_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&t, &now],
    )
    .map_err(db_err)?;
    let id_text: Vec<&str> = ids.iter().map(|id| id.0.as_str()).collect();
    let name: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    let category: Vec<&str> = plans.iter().map(|p| p.category.as_str()).collect();
    let info: Vec<&str> = plans.iter().map(|p| p.info.as_str()).collect();
    tx.execute(
        "INSERT INTO concepts (tenant_id, id, name, category, info, created_at, updated_at)
         SELECT $1, u.id, u.name, u.category, u.info, $6, $6
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(id, name, category, info)",
        &[&t, &id_text, &name, &category, &info, &now],
    )
    .map_err(db_err)?;
    let owner: Vec<&str> = names.iter().map(|n| id_text[n.2]).collect();
    let display: Vec<&str> = names.iter().map(|n| n.1).collect();
    let is_alias: Vec<bool> = names.iter().map(|n| n.3).collect();
    tx.execute(
        "INSERT INTO names (tenant_id, key, concept_id, display, is_alias)
         SELECT $1, u.key, u.concept_id, u.display, u.is_alias
         FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[])
              AS u(key, concept_id, display, is_alias)",
        &[&t, &keys, &owner, &display, &is_alias],
    )
    .map_err(db_err)?;
    // Image bytes go through the one place that stores them.
    for (plan, id) in plans.iter().zip(&ids) {
        for (pos, image) in &plan.images {
            attach_image(tx, tenant, id, image, *pos as i32, bytes, Role::Reference)?;
        }
    }
    Ok(Some(ids))
}

/// Stores the keys in three statements; `None` (nothing written) when an (image, region)
/// comes twice in the batch (the one-at-a-time path keeps the last).
pub(crate) fn put_keys(
    tx: &mut Transaction,
    tenant: &str,
    encoder: &str,
    keys: &[(ImageId, Region, Embedding)],
) -> Result<Option<()>> {
    let regions = keys
        .iter()
        .map(|(_, region, _)| region_to_text(region))
        .collect::<Result<Vec<_>>>()?;
    let mut seen = HashSet::with_capacity(keys.len());
    if !keys
        .iter()
        .zip(&regions)
        .all(|((image, _, _), region)| seen.insert((image.0.as_str(), region.as_str())))
    {
        return Ok(None);
    }
    let shas: Vec<&str> = keys.iter().map(|(image, _, _)| image.0.as_str()).collect();
    // Images deleted while they were being embedded get no keys.
    let present: HashSet<String> = tx
        .query(
            "SELECT sha256 FROM blobs WHERE tenant_id = $1 AND sha256 = ANY($2)",
            &[&tenant, &shas],
        )
        .map_err(db_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let kept: Vec<usize> = (0..keys.len())
        .filter(|&i| present.contains(shas[i]))
        .collect();
    if kept.is_empty() {
        return Ok(Some(()));
    }
    let sha: Vec<&str> = kept.iter().map(|&i| shas[i]).collect();
    let region: Vec<&str> = kept.iter().map(|&i| regions[i].as_str()).collect();
    let dim: Vec<i32> = kept.iter().map(|&i| keys[i].2.dim() as i32).collect();
    let vector: Vec<Vector> = kept
        .iter()
        .map(|&i| Vector::from(keys[i].2.as_slice().to_vec()))
        .collect();
    // A key replaced is logged as removed, then its successor as added (as one by one).
    tx.execute(
        "WITH gone AS (DELETE FROM embeddings e
             USING unnest($3::text[], $4::text[]) AS u(sha256, region)
             WHERE e.tenant_id = $1 AND e.encoder = $2 AND e.sha256 = u.sha256
               AND e.region = u.region
             RETURNING e.key)
         INSERT INTO key_log (tenant_id, encoder, key, op)
         SELECT $1, $2, key, '-' FROM gone ORDER BY key",
        &[&tenant, &encoder, &sha, &region],
    )
    .map_err(db_err)?;
    // Keys are drawn from the sequence in the batch's order, and logged in key order.
    tx.execute(
        "WITH added AS (INSERT INTO embeddings (tenant_id, encoder, sha256, region, dim, vector)
             SELECT $1, $2, u.sha256, u.region, u.dim, u.vector
             FROM unnest($3::text[], $4::text[], $5::int4[], $6::vector[])
                  WITH ORDINALITY AS u(sha256, region, dim, vector, n)
             ORDER BY u.n
             RETURNING key)
         INSERT INTO key_log (tenant_id, encoder, key, op)
         SELECT $1, $2, key, '+' FROM added ORDER BY key",
        &[&tenant, &encoder, &sha, &region, &dim, &vector],
    )
    .map_err(db_err)?;
    Ok(Some(()))
}

/// [`crate::load_concept`] for many concepts of one tenant at once (three statements), in the
/// order of `ids`.
pub(crate) fn load_concepts(
    tx: &mut Transaction,
    tenant: &rap_core::Tenant,
    ids: &[ConceptId],
) -> Result<Vec<Concept>> {
    let t = tenant.as_str();
    let wanted: Vec<&str> = ids.iter().map(|id| id.0.as_str()).collect();
    let mut concepts: HashMap<String, Concept> = tx
        .query(
            "SELECT id, name, category, info, created_at, updated_at FROM concepts
             WHERE tenant_id = $1 AND id = ANY($2)",
            &[&t, &wanted],
        )
        .map_err(db_err)?
        .iter()
        .map(|r| {
            let id: String = r.get(0);
            let concept = Concept {
                id: ConceptId(id.clone()),
                name: r.get(1),
                aliases: Vec::new(),
                category: r.get(2),
                info: r.get(3),
                images: Vec::new(),
                negatives: Vec::new(),
                created_at: r.get(4),
                updated_at: r.get(5),
            };
            (id, concept)
        })
        .collect();
    for r in tx
        .query(
            "SELECT concept_id, display FROM names
             WHERE tenant_id = $1 AND concept_id = ANY($2) AND is_alias
             ORDER BY concept_id, key COLLATE \"C\"",
            &[&t, &wanted],
        )
        .map_err(db_err)?
    {
        if let Some(c) = concepts.get_mut(r.get::<_, &str>(0)) {
            c.aliases.push(r.get(1));
        }
    }
    for r in tx
        .query(
            "SELECT ci.concept_id, b.sha256, b.width, b.height, b.format, b.size, ci.negative
             FROM concept_images ci JOIN blobs b ON b.tenant_id = ci.tenant_id AND b.sha256 = ci.sha256
             WHERE ci.tenant_id = $1 AND ci.concept_id = ANY($2)
             ORDER BY ci.concept_id, ci.position",
            &[&t, &wanted],
        )
        .map_err(db_err)?
    {
        if let Some(c) = concepts.get_mut(r.get::<_, &str>(0)) {
            let image = ConceptImage {
                id: ImageId(r.get(1)),
                width: r.get::<_, i32>(2) as u32,
                height: r.get::<_, i32>(3) as u32,
                format: r.get(4),
                bytes: r.get::<_, i64>(5) as u64,
            };
            if r.get::<_, bool>(6) {
                c.negatives.push(image);
            } else {
                c.images.push(image);
            }
        }
    }
    ids.iter()
        .map(|id| {
            concepts
                .remove(&id.0)
                .ok_or_else(|| Error::not_found("concept", id.0.clone()))
        })
        .collect()
}
