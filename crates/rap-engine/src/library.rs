//! The photo library: "where is Bo?" across a folder of photos, answered without decoding a
//! pixel again.
//!
//! - **Index** ([`Engine::library_add`], [`Engine::library_sync`]): the folders are walked,
//!   [`rap_memory::library::plan_scan`] says which files are new or changed (path, size,
//!   modification time, encoder), and each of those is read and hashed; a file whose bytes are
//!   already indexed at another path (a copy, a move) gets that photo's regions without being
//!   decoded. Every other photo is decoded (by several threads at once, at the reduced scale
//!   retrieval decodes a query at, [`crate::pixels`]) and its regions - the whole photo and
//!   the windows of every scale, exactly the regions `rap retrieve --no-cascade` encodes - are
//!   encoded in one batch and stored with it in one transaction. A run killed at any point
//!   leaves whole photos only and the next run goes on where it stopped.
//! - **Find** ([`Engine::library_find`]): for each photo, the evidence of its stored regions
//!   against the tenant's concepts as they are *now* ([`crate::retrieve::Evidence`], the very
//!   decision of [`Engine::retrieve`]: floor, margin over the runner-up concept, negatives,
//!   stability, calibrated confidence). A first pass keeps only the photos where some region
//!   is within reach of the concept's floor by an exact scan against the concept's own keys,
//!   so the full decision runs on few photos.
//! - **Who** ([`Engine::library_who`]): the decision over one indexed photo's regions.
//! - **Suggest** ([`Engine::library_suggest`]): photos whose best region comes within
//!   [`SUGGEST_BAND`] of the concept's floor but are not decided present - the ones a user
//!   should confirm ([`Engine::library_confirm`] adds the region as a reference image) or
//!   reject (as a negative example), so the concept gets better as it is used.
//! - **Text** ([`Engine::library_find_text`]): photos by words, for encoders with a text tower.
//!
//! The store keeps paths and embeddings only (no bytes, no thumbnails). A backend without a
//! library (PostgreSQL, for now) gives a clear error.

use crate::retrieve::{proposals, Evidence, RetrieveOptions, NEIGHBOURS};
use crate::Engine;
use rap_core::{BoundingBox, ConceptId, Embedding, Error, ImageEncoder, Result, Tenant};
use rap_memory::library::{plan_scan, LibraryPhoto, LibraryRegion, PhotoFile};
use rap_memory::{ConceptEdit, LibraryStore, NewLibraryPhoto};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Instant, UNIX_EPOCH};

/// How far under a concept's floor a photo's best region may score and still be suggested.
/// (Not calibrated: on dreambooth-dev the other subjects' photos score 0.3-0.45 against a
/// subject at the default floor 0.55, so 0.1 keeps suggestions to the close ones.)
pub const SUGGEST_BAND: f32 = 0.10;

/// File extensions indexed (lower case): what `rap_image` decodes.
const PHOTO_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// Photo formats seen but not indexed (no good pure-Rust decoder yet): counted as skipped.
const UNSUPPORTED_EXTENSIONS: &[&str] = &["heic", "heif", "avif", "dng", "cr2", "nef", "arw"];

/// Where an indexing run is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct ScanProgress {
    /// Files checked so far (indexed, copied, unchanged after hashing, or failed).
    pub done: usize,
    /// Files to check in this run.
    pub total: usize,
    /// Since the run started checking files.
    pub elapsed: std::time::Duration,
}

impl ScanProgress {
    /// Files per second so far (0 before the first).
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.done as f64 / s
        } else {
            0.0
        }
    }

    /// Seconds left at the rate so far (`None` before the first file).
    pub fn eta_secs(&self) -> Option<f64> {
        let rate = self.rate();
        (rate > 0.0).then(|| (self.total - self.done.min(self.total)) as f64 / rate)
    }
}

/// What an indexing run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScanReport {
    /// Photo files found by the walk.
    pub found: usize,
    /// Already indexed as they are.
    pub unchanged: usize,
    /// Decoded, encoded and stored.
    pub indexed: usize,
    /// Stored from a photo with the same bytes already indexed (a copy or a move).
    pub copied: usize,
    /// Indexed photos whose file is gone (removed by `sync`; only counted by `add`).
    pub missing: usize,
    /// Removed from the library (`sync`).
    pub removed: usize,
    /// Files in a format not indexed (HEIC, AVIF, raw), skipped.
    pub unsupported: usize,
    /// Files that could not be read or decoded: (path, why).
    pub failed: Vec<(String, String)>,
    /// Regions encoded in this run.
    pub regions: usize,
    pub seconds: f64,
    /// Photos indexed or copied per second.
    pub photos_per_sec: f64,
}

/// One photo where a concept is (or may be).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LibraryHit {
    /// The library's id of the photo.
    pub photo: u64,
    pub path: String,
    /// The concept's best region there.
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
    /// Its best cosine similarity to the concept's reference images.
    pub score: f32,
    /// How sure the decision is (0 for a suggestion: the decision did not find it).
    pub confidence: f32,
}

/// A concept's photos ([`Engine::library_find`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LibraryFind {
    pub concept: String,
    /// Photos where the decision finds it (all of them, not only those listed).
    pub total: usize,
    /// Best first, at most the limit asked for.
    pub photos: Vec<LibraryHit>,
}

/// A concept found in one photo ([`Engine::library_who`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhotoConcept {
    pub id: ConceptId,
    pub name: String,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
    pub confidence: f32,
}

/// Whether [`Engine::library_confirm`] adds a reference image or a negative example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// "Yes, that is Bo": the region becomes a reference image.
    Confirm,
    /// "No, not Bo": the region becomes a negative example.
    Reject,
}

/// A photo found by the walk, read and decoded by a worker.
enum Prepared {
    /// The same bytes are indexed as this photo: copy its regions.
    Copy(PhotoFile, u64),
    /// Decoded, with the regions to encode (full-image boxes and the decoded image's boxes).
    Decoded {
        file: PhotoFile,
        sha256: String,
        image: rap_image::ScaledImage,
        /// The regions in the full photo's pixels (what is stored) ...
        regions: Vec<BoundingBox>,
        /// ... and in the decoded image's (what is encoded).
        boxes: Vec<BoundingBox>,
    },
    Failed(PhotoFile, Error),
}

impl Engine {
    fn library_store(&self) -> Result<&dyn LibraryStore> {
        self.store().library().ok_or_else(|| {
            Error::invalid(
                "the photo library is not supported on this memory backend yet (it is on the \
                 embedded SQLite store)",
            )
        })
    }

    /// Indexes the photos under `dirs` (new and changed ones; see [the module](self)) and
    /// remembers the folders for [`Engine::library_sync`]. Photos indexed before and gone
    /// now are counted (`missing`), not removed. `workers`: decoding threads (at least 1).
    pub fn library_add(
        &self,
        tenant: &Tenant,
        dirs: &[PathBuf],
        options: &RetrieveOptions,
        workers: usize,
        progress: &mut dyn FnMut(ScanProgress),
    ) -> Result<ScanReport> {
        let lib = self.library_store()?;
        let mut roots = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let root = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
            if !root.is_dir() {
                return Err(Error::invalid(format!(
                    "{} is not a folder: `rap library add` takes folders of photos",
                    dir.display()
                )));
            }
            roots.push(path_text(&root)?);
        }
        let report = self.scan(tenant, &roots, false, options, workers, progress)?;
        for root in &roots {
            lib.add_library_root(tenant, root)?;
        }
        Ok(report)
    }

    /// Walks every folder given to [`Engine::library_add`] again: indexes what is new or
    /// changed, and forgets photos whose file is gone (a moved photo is found at its new path
    /// by its hash and keeps its regions without being encoded again).
    pub fn library_sync(
        &self,
        tenant: &Tenant,
        options: &RetrieveOptions,
        workers: usize,
        progress: &mut dyn FnMut(ScanProgress),
    ) -> Result<ScanReport> {
        let roots = self.library_store()?.library_roots(tenant)?;
        self.scan(tenant, &roots, true, options, workers, progress)
    }

    /// The library's counts and its folders.
    pub fn library_stats(
        &self,
        tenant: &Tenant,
    ) -> Result<(rap_memory::LibraryStats, Vec<String>)> {
        let lib = self.library_store()?;
        Ok((lib.library_stats(tenant)?, lib.library_roots(tenant)?))
    }

    fn scan(
        &self,
        tenant: &Tenant,
        roots: &[String],
        remove_missing: bool,
        options: &RetrieveOptions,
        workers: usize,
        progress: &mut dyn FnMut(ScanProgress),
    ) -> Result<ScanReport> {
        let lib = self.library_store()?;
        let encoder = self.encoder_for(tenant)?;
        let encoder_id = encoder.info().id.clone();
        let mut report = ScanReport::default();
        let mut found = Vec::new();
        for root in roots {
            walk(Path::new(root), &mut found, &mut report.unsupported)?;
        }
        report.found = found.len();
        let indexed = lib.library_photos(tenant)?;
        let plan = plan_scan(&indexed, &found, roots, &encoder_id);
        report.unchanged = plan.unchanged;
        // A sync removes the missing photos after the new paths are indexed, so a moved
        // photo is first copied from its old row (by its hash) and never encoded again.
        if !remove_missing {
            report.missing = plan.missing.len();
        }
        // Photos already indexed with this encoder, by content: a copy or a moved file.
        let by_hash: HashMap<String, u64> = indexed
            .iter()
            .filter(|p| p.encoder == encoder_id)
            .map(|p| (p.sha256.clone(), p.id))
            .collect();
        let by_hash = Arc::new(Mutex::new(by_hash));

        let start = Instant::now();
        let total = plan.check.len();
        let queue = Mutex::new(plan.check.into_iter());
        let (tx, rx) = mpsc::sync_channel::<Prepared>(workers.max(1) * 2);
        let limits = *self.limits();
        let scales = options.window_scales.clone();
        std::thread::scope(|s| -> Result<()> {
            for _ in 0..workers.max(1) {
                let tx = tx.clone();
                let (queue, by_hash, encoder, limits, scales) =
                    (&queue, by_hash.clone(), encoder.clone(), &limits, &scales);
                s.spawn(move || loop {
                    let Some(file) = queue.lock().ok().and_then(|mut q| q.next()) else {
                        return;
                    };
                    let prepared = prepare(file, &by_hash, encoder.as_ref(), limits, scales);
                    if tx.send(prepared).is_err() {
                        return; // the writer stopped (an error): stop too
                    }
                });
            }
            drop(tx);
            let mut done = 0;
            let result = (|| {
                for prepared in rx.iter() {
                    match prepared {
                        Prepared::Copy(file, from) => {
                            let photo = lib.copy_library_photo(tenant, from, &file)?;
                            if photo.path == file.path && from == photo.id {
                                report.unchanged += 1; // touched, same bytes
                            } else {
                                report.copied += 1;
                            }
                        }
                        Prepared::Decoded {
                            file,
                            sha256,
                            image,
                            regions,
                            boxes,
                        } => match self.encode_photo(encoder.as_ref(), &image, &boxes) {
                            Ok(embeddings) => {
                                report.regions += embeddings.len();
                                let regions = regions.into_iter().zip(embeddings).collect();
                                let photo = lib.put_library_photo(
                                    tenant,
                                    &NewLibraryPhoto {
                                        file,
                                        sha256: sha256.clone(),
                                        width: image.full_width,
                                        height: image.full_height,
                                        encoder: encoder_id.clone(),
                                        regions,
                                    },
                                )?;
                                if let Ok(mut map) = by_hash.lock() {
                                    map.insert(sha256, photo.id);
                                }
                                report.indexed += 1;
                            }
                            Err(e @ (Error::InvalidInput(_) | Error::LimitExceeded { .. })) => {
                                report.failed.push((file.path, e.to_string()))
                            }
                            Err(e) => return Err(e),
                        },
                        Prepared::Failed(file, e) => report.failed.push((file.path, e.to_string())),
                    }
                    done += 1;
                    progress(ScanProgress {
                        done,
                        total,
                        elapsed: start.elapsed(),
                    });
                }
                Ok(())
            })();
            if result.is_err() {
                // Let the workers see the closed channel and stop.
                if let Ok(mut q) = queue.lock() {
                    q.by_ref().for_each(drop);
                }
                drop(rx);
            }
            result
        })?;
        if remove_missing {
            report.removed = lib.remove_library_photos(tenant, &plan.missing)?;
        }
        report.seconds = start.elapsed().as_secs_f64();
        if report.seconds > 0.0 {
            report.photos_per_sec = (report.indexed + report.copied) as f64 / report.seconds;
        }
        Ok(report)
    }

    /// Encodes a photo's regions in one batch.
    fn encode_photo(
        &self,
        encoder: &dyn ImageEncoder,
        image: &rap_image::ScaledImage,
        boxes: &[BoundingBox],
    ) -> Result<Vec<Embedding>> {
        let embeddings = encoder.embed_regions(&image.image, boxes)?;
        if embeddings.len() != boxes.len() {
            return Err(Error::Model(format!(
                "encoder returned {} embeddings for {} regions",
                embeddings.len(),
                boxes.len()
            )));
        }
        Ok(embeddings)
    }

    /// The photos where the concept `name` is, best first (by confidence, then score), at most
    /// `limit`, under the decision of [`Engine::retrieve`] with `options` against the
    /// tenant's concepts as they are now. `total` counts every photo where it is.
    pub fn library_find(
        &self,
        tenant: &Tenant,
        name: &str,
        limit: usize,
        options: &RetrieveOptions,
    ) -> Result<LibraryFind> {
        let (concept, judged) = self.judge_library(tenant, name, options, 0.0)?;
        let mut present: Vec<LibraryHit> = judged
            .into_iter()
            .filter_map(|(hit, present)| present.then_some(hit))
            .collect();
        present.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(b.score.total_cmp(&a.score))
                .then(a.path.cmp(&b.path))
        });
        let total = present.len();
        present.truncate(limit);
        Ok(LibraryFind {
            concept,
            total,
            photos: present,
        })
    }

    /// Photos close to the concept but not decided present: the best region within
    /// [`SUGGEST_BAND`] under the concept's floor or above it (lost to another concept or to
    /// a negative), best first, at most `limit`.
    pub fn library_suggest(
        &self,
        tenant: &Tenant,
        name: &str,
        limit: usize,
        options: &RetrieveOptions,
    ) -> Result<LibraryFind> {
        let (concept, judged) = self.judge_library(tenant, name, options, SUGGEST_BAND)?;
        let mut close: Vec<LibraryHit> = judged
            .into_iter()
            .filter_map(|(hit, present)| (!present).then_some(hit))
            .collect();
        close.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.path.cmp(&b.path)));
        let total = close.len();
        close.truncate(limit);
        Ok(LibraryFind {
            concept,
            total,
            photos: close,
        })
    }

    /// Every photo whose best region scores at least `floor(C) - band` against the concept's
    /// reference keys, with the decision's verdict on it: (hit, present).
    fn judge_library(
        &self,
        tenant: &Tenant,
        name: &str,
        options: &RetrieveOptions,
        band: f32,
    ) -> Result<(String, Vec<(LibraryHit, bool)>)> {
        let lib = self.library_store()?;
        let encoder = self.encoder_for(tenant)?;
        self.ensure_keys(tenant, encoder.as_ref())?;
        let encoder_id = encoder.info().id.clone();
        let concept = self.store().concept(tenant, name)?;
        let catalog = self.catalog(tenant)?;
        let entry = catalog
            .concepts
            .iter()
            .find(|c| c.id == concept.id)
            .ok_or_else(|| Error::not_found("concept", name))?;
        let floor = options.floor(entry.stability);
        // The concept's own reference keys, for the first pass.
        let references: std::collections::HashSet<_> =
            concept.images.iter().map(|i| i.id.clone()).collect();
        let wanted: Vec<u64> = self
            .store()
            .key_locations(tenant, &encoder_id)?
            .into_iter()
            .filter(|l| references.contains(&l.image))
            .map(|l| l.key)
            .collect();
        let keys: Vec<Embedding> = self
            .store()
            .keys_by_id(tenant, &encoder_id, &wanted)?
            .into_iter()
            .map(|k| k.embedding)
            .collect();
        if keys.is_empty() {
            return Ok((concept.name, Vec::new()));
        }
        // First pass: photos with a region within reach of the floor.
        let mut by_photo: BTreeMap<u64, Vec<LibraryRegion>> = BTreeMap::new();
        for region in lib.library_regions(tenant, &encoder_id)? {
            by_photo.entry(region.photo).or_default().push(region);
        }
        let reach = floor - band;
        let candidates: Vec<(u64, Vec<LibraryRegion>)> = by_photo
            .into_iter()
            .filter(|(_, regions)| {
                regions.iter().any(|r| {
                    keys.iter()
                        .any(|k| rap_core::dot(k.as_slice(), r.embedding.as_slice()) >= reach)
                })
            })
            .collect();
        let ids: Vec<u64> = candidates.iter().map(|(id, _)| *id).collect();
        let paths: HashMap<u64, String> = lib
            .library_photos_by_id(tenant, &ids)?
            .into_iter()
            .map(|p| (p.id, p.path))
            .collect();
        let mut out = Vec::new();
        for (photo, regions) in candidates {
            let Some(path) = paths.get(&photo) else {
                continue; // removed meanwhile
            };
            let decided = self.decide_regions(tenant, encoder.as_ref(), &regions, options)?;
            let Some(c) = decided.into_iter().find(|c| c.id == concept.id) else {
                continue;
            };
            if !c.present && c.score < reach {
                continue;
            }
            out.push((
                LibraryHit {
                    photo,
                    path: path.clone(),
                    bbox: c.bbox,
                    score: c.score,
                    confidence: c.confidence,
                },
                c.present,
            ));
        }
        Ok((concept.name, out))
    }

    /// The decision of [`Engine::retrieve`] over stored regions of one photo.
    fn decide_regions(
        &self,
        tenant: &Tenant,
        encoder: &dyn ImageEncoder,
        regions: &[LibraryRegion],
        options: &RetrieveOptions,
    ) -> Result<Vec<crate::ConceptScore>> {
        let k = NEIGHBOURS * encoder.key_regions(1024, 1024).len().max(1);
        let queries: Vec<Embedding> = regions.iter().map(|r| r.embedding.clone()).collect();
        let found = self.search_nearest(tenant, encoder, &queries, k)?;
        let evidence = Evidence::from_neighbours(
            self.catalog(tenant)?,
            regions.iter().map(|r| r.bbox).collect(),
            &found,
        );
        Ok(evidence.decide(options))
    }

    /// The indexed photo at `path` (as given, or as the file system resolves it).
    pub fn library_photo(&self, tenant: &Tenant, path: &Path) -> Result<LibraryPhoto> {
        let lib = self.library_store()?;
        let text = path_text(path)?;
        if let Some(p) = lib.library_photo(tenant, &text)? {
            return Ok(p);
        }
        let resolved = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        lib.library_photo(tenant, &path_text(&resolved)?)?
            .ok_or_else(|| Error::not_found("library photo", path.display().to_string()))
    }

    /// The indexed photo with this id.
    pub fn library_photo_by_id(&self, tenant: &Tenant, id: u64) -> Result<LibraryPhoto> {
        self.library_store()?
            .library_photos_by_id(tenant, &[id])?
            .pop()
            .ok_or_else(|| Error::not_found("library photo", id.to_string()))
    }

    /// The concepts in an indexed photo, from its stored regions (nothing is decoded or
    /// encoded): the decision of [`Engine::retrieve`] with `options`, best first.
    pub fn library_who(
        &self,
        tenant: &Tenant,
        path: &Path,
        options: &RetrieveOptions,
    ) -> Result<(LibraryPhoto, Vec<PhotoConcept>)> {
        let photo = self.library_photo(tenant, path)?;
        let encoder = self.encoder_for(tenant)?;
        if photo.encoder != encoder.info().id {
            return Err(Error::invalid(format!(
                "{} was indexed with the encoder {}, the memory now uses {}: run `rap library sync`",
                photo.path,
                photo.encoder,
                encoder.info().id
            )));
        }
        self.ensure_keys(tenant, encoder.as_ref())?;
        let regions = self
            .library_store()?
            .library_photo_regions(tenant, photo.id)?;
        let found = self
            .decide_regions(tenant, encoder.as_ref(), &regions, options)?
            .into_iter()
            .filter(|c| c.present)
            .map(|c| PhotoConcept {
                id: c.id,
                name: c.name,
                score: c.score,
                bbox: c.bbox,
                confidence: c.confidence,
            })
            .collect();
        Ok((photo, found))
    }

    /// Photos by words (encoders with a text tower: CLIP, SigLIP): each photo's best region
    /// against the text's embedding, best first, at most `limit`. No decision (text scores
    /// are not calibrated): the score is the cosine similarity.
    pub fn library_find_text(
        &self,
        tenant: &Tenant,
        text: &str,
        limit: usize,
    ) -> Result<Vec<LibraryHit>> {
        if text.trim().is_empty() {
            return Err(Error::invalid("nothing to search for: the text is empty"));
        }
        let lib = self.library_store()?;
        let encoder = self.encoder_for(tenant)?;
        if !encoder.has_text() {
            return Err(Error::Model(format!(
                "the memory's encoder {} has no text tower, so the library cannot be searched \
                 by words; switch to a CLIP or SigLIP model with `rap reindex --encoder NAME` \
                 and `rap library sync`",
                encoder.info().id
            )));
        }
        let query = encoder
            .embed_texts(&[text])?
            .pop()
            .ok_or_else(|| Error::Model("encoder returned no text embedding".into()))?;
        let mut best: HashMap<u64, (f32, BoundingBox)> = HashMap::new();
        for r in lib.library_regions(tenant, &encoder.info().id)? {
            let s = query.cosine(&r.embedding);
            let e = best.entry(r.photo).or_insert((f32::NEG_INFINITY, r.bbox));
            if s > e.0 {
                *e = (s, r.bbox);
            }
        }
        let mut ranked: Vec<(u64, f32, BoundingBox)> =
            best.into_iter().map(|(p, (s, b))| (p, s, b)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        let ids: Vec<u64> = ranked.iter().map(|r| r.0).collect();
        let paths: HashMap<u64, String> = lib
            .library_photos_by_id(tenant, &ids)?
            .into_iter()
            .map(|p| (p.id, p.path))
            .collect();
        Ok(ranked
            .into_iter()
            .filter_map(|(photo, score, bbox)| {
                Some(LibraryHit {
                    photo,
                    path: paths.get(&photo)?.clone(),
                    bbox,
                    score,
                    confidence: 0.0,
                })
            })
            .collect())
    }

    /// Confirms (a reference image) or rejects (a negative example) the part `bbox` of an
    /// indexed photo (the whole photo when `None`) for the concept `name`: what a user does
    /// with a suggestion. The photo is read from its path now.
    pub fn library_confirm(
        &self,
        tenant: &Tenant,
        name: &str,
        path: &Path,
        bbox: Option<&BoundingBox>,
        verdict: Verdict,
    ) -> Result<rap_core::Concept> {
        let photo = self.library_photo(tenant, path)?;
        let bytes = rap_image::read_file(Path::new(&photo.path), self.limits())?;
        let image = self
            .negative_example(bytes, bbox)
            .map_err(|e| e.context(&photo.path))?;
        let edit = match verdict {
            Verdict::Confirm => ConceptEdit {
                add_images: vec![image],
                ..ConceptEdit::default()
            },
            Verdict::Reject => ConceptEdit {
                add_negatives: vec![image],
                ..ConceptEdit::default()
            },
        };
        self.edit_concept(tenant, name, edit)
    }
}

impl Engine {
    /// A JPEG thumbnail of an indexed photo (longer side at most `max_side` pixels), read from
    /// its path now, with `bbox` (full-photo pixels, as hits give it) drawn as a frame. The
    /// library keeps no thumbnails: a caller caches them.
    pub fn library_thumbnail(
        &self,
        tenant: &Tenant,
        photo: u64,
        max_side: u32,
        bbox: Option<&BoundingBox>,
    ) -> Result<Vec<u8>> {
        let photo = self.library_photo_by_id(tenant, photo)?;
        let bytes = rap_image::read_file(Path::new(&photo.path), self.limits())?;
        let max_side = max_side.clamp(16, 1024);
        let decoded = rap_image::decode_for(&bytes, self.limits(), Some(max_side))?;
        let (w, h) = (decoded.image.width(), decoded.image.height());
        let scale = (max_side as f32 / w.max(h) as f32).min(1.0);
        let (tw, th) = (
            ((w as f32 * scale).round() as u32).max(1),
            ((h as f32 * scale).round() as u32).max(1),
        );
        let mut thumb = rap_image::resize(&decoded.image, tw, th, rap_image::Filter::Bilinear)?;
        if let Some(b) = bbox {
            let sx = tw as f32 / decoded.full_width.max(1) as f32;
            let sy = th as f32 / decoded.full_height.max(1) as f32;
            draw_frame(&mut thumb, &b.scaled(sx, sy), [255, 210, 0]);
        }
        rap_image::encode_jpeg(&thumb, 85)
    }
}

/// Draws the outline of `b` (clipped to the image), 2 pixels wide. (Four lines: an imaging
/// crate with drawing would be a dependency for this alone.)
fn draw_frame(img: &mut image::RgbImage, b: &BoundingBox, colour: [u8; 3]) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    if w == 0
        || h == 0
        || !(b.x1.is_finite() && b.y1.is_finite() && b.x2.is_finite() && b.y2.is_finite())
    {
        return;
    }
    let clamp = |v: f32, max: i64| (v.round() as i64).clamp(0, max - 1);
    let (x1, x2) = (clamp(b.x1, w), clamp(b.x2 - 1.0, w));
    let (y1, y2) = (clamp(b.y1, h), clamp(b.y2 - 1.0, h));
    for t in 0..2 {
        for x in x1..=x2 {
            for y in [(y1 + t).min(y2), (y2 - t).max(y1)] {
                img.put_pixel(x as u32, y as u32, image::Rgb(colour));
            }
        }
        for y in y1..=y2 {
            for x in [(x1 + t).min(x2), (x2 - t).max(x1)] {
                img.put_pixel(x as u32, y as u32, image::Rgb(colour));
            }
        }
    }
}

/// Reads, hashes and (unless the same bytes are indexed already) decodes one photo.
fn prepare(
    file: PhotoFile,
    by_hash: &Mutex<HashMap<String, u64>>,
    encoder: &dyn ImageEncoder,
    limits: &rap_image::Limits,
    scales: &[f32],
) -> Prepared {
    let bytes = match rap_image::read_file(Path::new(&file.path), limits) {
        Ok(b) => b,
        Err(e) => return Prepared::Failed(file, e),
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(&from) = by_hash.lock().ok().as_ref().and_then(|m| m.get(&sha256)) {
        return Prepared::Copy(file, from);
    }
    let image = match crate::pixels::decode_query(&bytes, limits, encoder, scales, false) {
        Ok(i) => i,
        Err(e) => return Prepared::Failed(file, e),
    };
    let regions: Vec<BoundingBox> = proposals(image.full_width, image.full_height, scales)
        .into_iter()
        .map(|r| r.bbox)
        .collect();
    let boxes = regions.iter().map(|b| image.to_image_box(b)).collect();
    Prepared::Decoded {
        file,
        sha256,
        image,
        regions,
        boxes,
    }
}

/// Adds the photo files under `root` to `found` (symbolic links are not followed; hidden
/// files and folders are skipped), counting files in formats not indexed.
fn walk(root: &Path, found: &mut Vec<PhotoFile>, unsupported: &mut usize) -> Result<()> {
    let hidden = |e: &walkdir::DirEntry| {
        e.depth() > 0 && e.file_name().to_str().is_some_and(|n| n.starts_with('.'))
    };
    for entry in walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !hidden(e))
    {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // An unreadable sub-folder is skipped; an unreadable root is an error.
                if e.depth() == 0 {
                    return Err(Error::invalid(format!(
                        "cannot read {}: {e}",
                        root.display()
                    )));
                }
                tracing::warn!("skipped: {e}");
                continue;
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let ext = entry
            .path()
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        if UNSUPPORTED_EXTENSIONS.contains(&ext.as_str()) {
            *unsupported += 1;
            continue;
        }
        if !PHOTO_EXTENSIONS.contains(&ext.as_str()) {
            continue;
        }
        let Some(path) = entry.path().to_str() else {
            *unsupported += 1; // a path that is not UTF-8 cannot be stored as text
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue; // removed while walking
        };
        let mtime_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        found.push(PhotoFile {
            path: path.to_owned(),
            size: meta.len(),
            mtime_ms,
        });
    }
    Ok(())
}

/// A path as the text the library stores; paths that are not UTF-8 are refused.
fn path_text(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid(format!("{} is not a UTF-8 path", path.display())))
}
