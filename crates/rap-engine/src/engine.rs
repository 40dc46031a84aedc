//! [`Engine`]: opens the memory, loads the encoder lazily, and runs Remember and indexing.

use image::RgbImage;
use rap_core::{
    BoundingBox, Concept, Embedding, Error, ImageEncoder, ImageId, NewConcept, Result, Tenant,
};
use rap_image::Limits;
use rap_memory::{ConceptEdit, ConceptStore, ImageInput, KeyIndex, SqliteStore, StoreStats};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Loads the image encoder on first use. `Ok(None)` means none is installed.
pub type EncoderLoader = Box<dyn Fn() -> Result<Option<Arc<dyn ImageEncoder>>> + Send + Sync>;

pub use crate::encoders::EncoderResolver;

/// Where the engine keeps things and what it accepts.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The data dir: holds `memory.sqlite` for the embedded store, and the saved indexes.
    pub data_dir: PathBuf,
    pub limits: Limits,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            limits: Limits::default(),
        }
    }

    /// The memory's SQLite file.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("memory.sqlite")
    }

    /// Where large vector indexes are saved between processes (a cache of the store).
    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }
}

/// Keys computed before a write (see [`Engine::add_concept`]), stored after it.
struct NewKeys {
    encoder: Arc<dyn ImageEncoder>,
    keys: HashMap<ImageId, Vec<(rap_core::Region, Embedding)>>,
}

/// The pipeline over one memory (all its tenants).
pub struct Engine {
    config: EngineConfig,
    store: Arc<dyn ConceptStore>,
    loader: EncoderLoader,
    encoder: OnceLock<Option<Arc<dyn ImageEncoder>>>,
    indexes: Mutex<HashMap<(Tenant, String), KeyIndex>>,
    /// (tenant, encoder id) -> the tenant's memory version at which every image of the tenant
    /// had keys of that encoder (see [`Engine::ensure_keys`]).
    keyed: Mutex<HashMap<(Tenant, String), u64>>,
    /// Images decoded when they were checked for storing, kept for their keys (see
    /// [`Checked`]).
    checked: Mutex<Checked>,
    /// Each tenant's concepts as queries need them (see [`crate::catalog`]).
    pub(crate) catalogs: Mutex<HashMap<Tenant, Arc<crate::catalog::Catalog>>>,
    /// Loads encoders other than the default by name (see [`crate::encoders`]).
    pub(crate) resolver: Option<EncoderResolver>,
    pub(crate) named: Mutex<HashMap<String, Arc<dyn ImageEncoder>>>,
    /// Extra query regions (a detector's boxes) for retrieval, if any.
    pub(crate) proposer: Option<Arc<dyn rap_core::RegionProposer>>,
}

impl Engine {
    /// Opens the embedded memory in `config.data_dir` (created if needed); other backends are
    /// opened by the application and given to [`Engine::with_store`]. The encoder records of an
    /// earlier version's `DATA_DIR/encoders.json` move into it ([`crate::migrate_encoders_file`]).
    pub fn open(config: EngineConfig, loader: EncoderLoader) -> Result<Self> {
        let store: Arc<dyn ConceptStore> = Arc::new(SqliteStore::open(config.store_path())?);
        crate::encoders::migrate_encoders_file(&config.data_dir, store.as_ref())?;
        Ok(Self::with_store(config, store, loader))
    }

    /// An engine over any store backend.
    pub fn with_store(
        config: EngineConfig,
        store: Arc<dyn ConceptStore>,
        loader: EncoderLoader,
    ) -> Self {
        Engine {
            config,
            store,
            loader,
            encoder: OnceLock::new(),
            indexes: Mutex::new(HashMap::new()),
            keyed: Mutex::new(HashMap::new()),
            checked: Mutex::new(Checked::default()),
            catalogs: Mutex::new(HashMap::new()),
            resolver: None,
            named: Mutex::new(HashMap::new()),
            proposer: None,
        }
    }

    /// Lets the engine load encoders by name, so each tenant's memory can use its own
    /// (`rap reindex --encoder NAME`); without it every memory uses the default encoder.
    pub fn with_encoder_resolver(mut self, resolver: EncoderResolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Adds a region proposer (a detector): retrieval also embeds the boxes it proposes in
    /// each query image, besides the whole image and the windows. At each query it is told
    /// the tenant's concept categories as stored then ([`rap_core::ProposalHints`]), which an
    /// open-vocabulary detector queries.
    ///
    /// Nothing turns this on by default: with CenterNet's boxes on dreambooth-dev (`--refs 1`,
    /// 86 queries; `crates/rap-cli/examples/detector_retrieval.rs`) top-1 (0.953), MRR (0.973)
    /// and weighted recognition at 0.5 (0.974) were unchanged, for 1.2 more regions and about
    /// 45% more time per query.
    pub fn with_region_proposer(mut self, proposer: Arc<dyn rap_core::RegionProposer>) -> Self {
        self.proposer = Some(proposer);
        self
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    pub fn store(&self) -> &dyn ConceptStore {
        self.store.as_ref()
    }

    /// The installed encoder, loaded on first call; `Ok(None)` if none is installed.
    pub fn encoder(&self) -> Result<Option<Arc<dyn ImageEncoder>>> {
        if let Some(e) = self.encoder.get() {
            return Ok(e.clone());
        }
        let loaded = (self.loader)()?;
        Ok(self.encoder.get_or_init(|| loaded).clone())
    }

    /// Checks an image file and reads it for storing.
    pub fn read_image(&self, path: &Path) -> Result<ImageInput> {
        // Regular files only, read up to the byte limit (as `ImageInput::from_path`).
        let bytes = rap_image::read_file(path, &self.config.limits)?;
        self.image_from_bytes(bytes)
            .map_err(|e| e.context(path.display()))
    }

    /// Checks image bytes (an upload) for storing. The check decodes the image; the decoded
    /// image is kept a while, so that its keys, computed when it is stored, do not decode it
    /// again.
    pub fn image_from_bytes(&self, bytes: Vec<u8>) -> Result<ImageInput> {
        let (input, rgb) = ImageInput::decoded_from_bytes(bytes, &self.config.limits)?;
        if let Ok(mut checked) = self.checked.lock() {
            checked.keep(input.id.clone(), rgb);
        }
        Ok(input)
    }

    /// A negative example ("that's not this concept") from an image: the whole image, or the
    /// part of it under `bbox` (pixels of the orientation-corrected image, as retrieval's hits
    /// give them), stored as a JPEG of that crop.
    pub fn negative_example(
        &self,
        bytes: Vec<u8>,
        bbox: Option<&BoundingBox>,
    ) -> Result<ImageInput> {
        let Some(bbox) = bbox else {
            return self.image_from_bytes(bytes);
        };
        let rgb = rap_image::decode(&bytes, &self.config.limits)?;
        let crop = rap_image::crop_box(&rgb, bbox)?;
        if crop.width() < 8 || crop.height() < 8 {
            return Err(Error::invalid(format!(
                "the box {:?} covers only {}x{} pixels of the image: mark at least 8x8",
                [bbox.x1, bbox.y1, bbox.x2, bbox.y2],
                crop.width(),
                crop.height()
            )));
        }
        self.image_from_bytes(rap_image::encode_jpeg(&crop, 92)?)
    }

    // ---- Remember ----

    /// Stores a new concept and its keys. The keys are computed first (when an encoder is
    /// installed), so an image the encoder cannot key is refused with nothing stored: a
    /// stored image can never make the tenant's searches fail.
    pub fn add_concept(
        &self,
        tenant: &Tenant,
        new: &NewConcept,
        images: Vec<ImageInput>,
    ) -> Result<Concept> {
        self.check_new(new, &images)?;
        let keys = self.keys_before_commit(tenant, images.iter())?;
        let concept = self.store.add_concept(tenant, new, images)?;
        self.store_new_keys(tenant, keys);
        Ok(concept)
    }

    /// Imports many concepts in one transaction (keys computed first, as
    /// [`Engine::add_concept`] does), at most `limits.max_concepts_per_import` of them.
    pub fn add_concepts(
        &self,
        tenant: &Tenant,
        concepts: Vec<(NewConcept, Vec<ImageInput>)>,
    ) -> Result<Vec<Concept>> {
        let limits = &self.config.limits;
        let count = concepts.len() as u64;
        Limits::check(
            "max_concepts_per_import",
            limits.max_concepts_per_import,
            count,
            || format!("the import holds {count} concepts"),
        )?;
        for (new, images) in &concepts {
            self.check_new(new, images)?;
        }
        let keys = self.keys_before_commit(tenant, concepts.iter().flat_map(|(_, i)| i))?;
        let added = self.store.add_concepts(tenant, concepts)?;
        self.store_new_keys(tenant, keys);
        Ok(added)
    }

    /// Edits a concept (keys of added images and negatives computed first, as
    /// [`Engine::add_concept`] does). The result must stay within the limits.
    pub fn edit_concept(&self, tenant: &Tenant, name: &str, edit: ConceptEdit) -> Result<Concept> {
        let before = self.store.concept(tenant, name)?;
        let after = |n: usize, added: usize, removed: usize| (n + added).saturating_sub(removed);
        self.config.limits.check_concept(
            edit.rename.as_deref().unwrap_or(&before.name),
            edit.info.as_deref().unwrap_or(&before.info),
            edit.category.as_deref().unwrap_or(&before.category),
            after(
                before.aliases.len(),
                edit.add_aliases.len(),
                edit.remove_aliases.len(),
            ),
            after(
                before.images.len(),
                edit.add_images.len(),
                edit.remove_images.len(),
            ),
            after(
                before.negatives.len(),
                edit.add_negatives.len(),
                edit.remove_negatives.len(),
            ),
        )?;
        let keys =
            self.keys_before_commit(tenant, edit.add_images.iter().chain(&edit.add_negatives))?;
        let concept = self.store.edit_concept(tenant, name, edit)?;
        self.store_new_keys(tenant, keys);
        Ok(concept)
    }

    /// A new concept's texts and counts against the limits.
    fn check_new(&self, new: &NewConcept, images: &[ImageInput]) -> Result<()> {
        self.config.limits.check_concept(
            &new.name,
            &new.info,
            &new.category,
            new.aliases.len(),
            images.len(),
            0,
        )
    }

    pub fn remove_concept(&self, tenant: &Tenant, name: &str) -> Result<Concept> {
        self.store.remove_concept(tenant, name)
    }

    pub fn concept(&self, tenant: &Tenant, name: &str) -> Result<Concept> {
        self.store.concept(tenant, name)
    }

    pub fn concepts(&self, tenant: &Tenant) -> Result<Vec<Concept>> {
        self.store.concepts(tenant)
    }

    pub fn image_bytes(&self, tenant: &Tenant, image: &ImageId) -> Result<Vec<u8>> {
        self.store.image_bytes(tenant, image)
    }

    pub fn stats(&self, tenant: &Tenant) -> Result<StoreStats> {
        self.store.stats(tenant)
    }

    /// Imports a reference `database.json` (or its folder): all concepts or none.
    pub fn import_reference(&self, tenant: &Tenant, path: &Path) -> Result<Vec<Concept>> {
        let concepts = rap_memory::reference::read_reference(path, &self.config.limits)?;
        self.add_concepts(tenant, concepts)
    }

    /// Exports the tenant's memory as a reference `database.json` with its images in `dir`.
    pub fn export_reference(
        &self,
        tenant: &Tenant,
        dir: &Path,
        overwrite: bool,
    ) -> Result<PathBuf> {
        let concepts = self.store.concepts(tenant)?;
        rap_memory::reference::write_reference(dir, &concepts, overwrite, |concept, i| {
            self.store.image_bytes(tenant, &concept.images[i].id)
        })
    }

    // ---- Keys ----

    /// The encoder that keys the tenant's new images now: its chosen one, else the installed
    /// default. `None` (with a log line) when none is installed or it does not load: the
    /// images are then keyed before the first search.
    fn key_encoder(&self, tenant: &Tenant) -> Option<Arc<dyn ImageEncoder>> {
        let encoder = match self.tenant_encoders(tenant) {
            Ok(t) if t.active.is_some() => self.encoder_for(tenant).map(Some),
            _ => self.encoder(),
        };
        match encoder {
            Ok(Some(encoder)) => Some(encoder),
            Ok(None) => {
                tracing::debug!("no encoder installed; keys will be computed once one is");
                None
            }
            Err(e) => {
                tracing::warn!("encoder did not load: {e}");
                None
            }
        }
    }

    /// The keys of one stored or new image: decoded under the limits (or as it was decoded
    /// when [`Engine::image_from_bytes`] checked it, see [`Checked`]), each of the encoder's
    /// key regions embedded (resized straight from the decoded image, in one batch).
    fn image_keys(
        &self,
        encoder: &dyn ImageEncoder,
        id: &ImageId,
        bytes: &[u8],
    ) -> Result<Vec<(rap_core::Region, Embedding)>> {
        let kept = self.checked.lock().ok().and_then(|mut c| c.take(id));
        let rgb = match kept {
            Some(rgb) => rgb,
            None => rap_image::decode(bytes, &self.config.limits)?,
        };
        // The encoder says which regions of a reference are keyed (the whole image, and
        // crops for an encoder that keys them).
        let regions = encoder.key_regions(rgb.width(), rgb.height());
        let boxes: Vec<BoundingBox> = regions.iter().map(|r| r.bbox).collect();
        let embeddings = encoder.embed_regions(&rgb, &boxes)?;
        if embeddings.len() != regions.len() || regions.is_empty() {
            return Err(Error::Model(format!(
                "encoder returned {} embeddings for {} key regions",
                embeddings.len(),
                regions.len()
            )));
        }
        Ok(regions.into_iter().zip(embeddings).collect())
    }

    /// Computes the keys of images about to be stored, before anything is written: an image
    /// that cannot be keyed fails the write here. `None` when no encoder is available.
    fn keys_before_commit<'a>(
        &self,
        tenant: &Tenant,
        images: impl Iterator<Item = &'a ImageInput>,
    ) -> Result<Option<NewKeys>> {
        let mut images = images.peekable();
        if images.peek().is_none() {
            return Ok(None);
        }
        let Some(encoder) = self.key_encoder(tenant) else {
            return Ok(None);
        };
        let mut keys = HashMap::new();
        for image in images {
            if !keys.contains_key(&image.id) {
                let computed = self
                    .image_keys(encoder.as_ref(), &image.id, &image.bytes)
                    .map_err(|e| e.context(format!("image {}", &image.id.0[..12])))?;
                keys.insert(image.id.clone(), computed);
            }
        }
        Ok(Some(NewKeys { encoder, keys }))
    }

    /// Best effort after a write: stores the keys computed before it (and computes any other
    /// missing ones), so the first search is fast. A failure here is logged; the keys are
    /// then computed before the next search.
    fn store_new_keys(&self, tenant: &Tenant, keys: Option<NewKeys>) {
        let Some(NewKeys { encoder, mut keys }) = keys else {
            return;
        };
        if let Err(e) = self.compute_keys_with(tenant, encoder.as_ref(), &mut keys, &mut |_, _| {})
        {
            tracing::warn!("could not store keys now (will retry before the next search): {e}");
        }
    }

    /// Computes the keys of every image of the tenant that has none for `encoder` (one per
    /// region of [`ImageEncoder::key_regions`]), one image per transaction (so an interrupted
    /// run resumes where it stopped). `progress(done, total)` is called after each image.
    /// Returns the number of images embedded. An encoder whose key regions changed has another
    /// id, so a memory keyed the old way has no keys for it and is re-keyed here (by `rap
    /// reindex`, or before the first search).
    ///
    /// A stored image that cannot be keyed (one stored before its limits were checked, say)
    /// is skipped with a warning, so it cannot make every search of the tenant fail.
    pub fn compute_keys(
        &self,
        tenant: &Tenant,
        encoder: &dyn ImageEncoder,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<usize> {
        self.compute_keys_with(tenant, encoder, &mut HashMap::new(), progress)
    }

    /// [`Engine::compute_keys`], taking an image's keys from `computed` when they are there.
    fn compute_keys_with(
        &self,
        tenant: &Tenant,
        encoder: &dyn ImageEncoder,
        computed: &mut HashMap<ImageId, Vec<(rap_core::Region, Embedding)>>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<usize> {
        let missing = self.store.images_without_keys(tenant, &encoder.info().id)?;
        let total = missing.len();
        for (done, image) in missing.iter().enumerate() {
            let keys = match computed.remove(image) {
                Some(keys) => keys,
                None => {
                    let bytes = match self.store.image_bytes(tenant, image) {
                        Ok(b) => b,
                        Err(Error::NotFound { .. }) => continue, // removed meanwhile
                        Err(e) => return Err(e),
                    };
                    match self.image_keys(encoder, image, &bytes) {
                        Ok(keys) => keys,
                        Err(e @ (Error::InvalidInput(_) | Error::LimitExceeded { .. })) => {
                            tracing::warn!(
                                "tenant {tenant}: image {} cannot be keyed, so it is never \
                                 retrieved (remove it with `rap concept edit NAME \
                                 --remove-image {}`): {e}",
                                image.0,
                                &image.0[..12]
                            );
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            // All of one image's keys in one transaction.
            let keys: Vec<_> = keys
                .into_iter()
                .map(|(region, embedding)| (image.clone(), region, embedding))
                .collect();
            self.store.put_keys(tenant, &encoder.info().id, &keys)?;
            progress(done + 1, total);
        }
        Ok(total)
    }

    /// Makes sure every image of the tenant has keys of `encoder`, cheaply when nothing
    /// changed: the store is asked for images without keys ([`Engine::compute_keys`]) only
    /// when the tenant's memory version ([`ConceptStore::memory_version`], raised by every
    /// change of its concepts and so by every image added, by any process on the store) moved
    /// since this process last found every image keyed. The version is read *before* the
    /// keys are computed, so an image added meanwhile moves it again and is keyed at the next
    /// call. Keys lost some other way (not by a change of concepts) are not noticed until the
    /// version moves; `rap reindex` computes them at once.
    pub fn ensure_keys(&self, tenant: &Tenant, encoder: &dyn ImageEncoder) -> Result<()> {
        let key = (tenant.clone(), encoder.info().id.clone());
        let version = self.store.memory_version(tenant)?;
        let keyed = |map: &HashMap<(Tenant, String), u64>| map.get(&key) == Some(&version);
        if keyed(
            &*self
                .keyed
                .lock()
                .map_err(|_| Error::storage("keys lock poisoned"))?,
        ) {
            return Ok(());
        }
        self.compute_keys(tenant, encoder, &mut |_, _| {})?;
        self.keyed
            .lock()
            .map_err(|_| Error::storage("keys lock poisoned"))?
            .insert(key, version);
        Ok(())
    }

    /// Makes sure every image has keys from the memory's encoder (see [`Engine::encoder_for`]).
    /// Errors clearly when no encoder is installed.
    pub fn reindex(
        &self,
        tenant: &Tenant,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<usize> {
        let encoder = self.encoder_for(tenant)?;
        self.compute_keys(tenant, encoder.as_ref(), progress)
    }

    /// The installed encoder, or an error that says how to install one.
    pub fn require_encoder(&self) -> Result<Arc<dyn ImageEncoder>> {
        self.encoder()?.ok_or_else(|| {
            Error::not_installed(
                "default",
                "no image encoder is installed, so images cannot be searched yet: run `rap models install default`",
            )
        })
    }

    /// Runs `f` with the tenant's up-to-date key index for the memory's encoder (computing
    /// missing keys and applying logged changes first).
    pub fn with_key_index<T>(
        &self,
        tenant: &Tenant,
        f: impl FnOnce(&KeyIndex) -> Result<T>,
    ) -> Result<T> {
        let encoder = self.encoder_for(tenant)?;
        self.ensure_keys(tenant, encoder.as_ref())?;
        let info = encoder.info();
        self.current_index(tenant, &info.id, info.dim, f)
    }

    /// The images of the `k` keys nearest to each query in the tenant's memory, best first,
    /// with their cosine similarity (computing missing keys first). The store searches itself
    /// where it can (PostgreSQL: every process sees every write at once); otherwise the
    /// process's key index does, brought up to date from the store's log first.
    pub fn nearest_images(
        &self,
        tenant: &Tenant,
        queries: &[Embedding],
        k: usize,
    ) -> Result<Vec<Vec<(f32, ImageId)>>> {
        let encoder = self.encoder_for(tenant)?;
        self.ensure_keys(tenant, encoder.as_ref())?;
        self.search_nearest(tenant, encoder.as_ref(), queries, k)
    }

    /// [`Engine::nearest_images`] with the memory's encoder already resolved and its keys
    /// already computed ([`Engine::ensure_keys`]): the search alone, for a query that
    /// searches more than once.
    pub(crate) fn search_nearest(
        &self,
        tenant: &Tenant,
        encoder: &dyn ImageEncoder,
        queries: &[Embedding],
        k: usize,
    ) -> Result<Vec<Vec<(f32, ImageId)>>> {
        let info = encoder.info();
        if let Some(found) = self.store.search_keys(tenant, &info.id, queries, k)? {
            return Ok(found
                .into_iter()
                .map(|hits| {
                    hits.into_iter()
                        .map(|h| (h.score, h.location.image))
                        .collect()
                })
                .collect());
        }
        self.current_index(tenant, &info.id, info.dim, |index| {
            queries
                .iter()
                .map(|q| {
                    Ok(index
                        .search(q, k)?
                        .into_iter()
                        .map(|(score, image, _)| (score, image.clone()))
                        .collect())
                })
                .collect()
        })
    }

    /// Runs `f` with the process's index of (tenant, encoder), built or brought up to date.
    fn current_index<T>(
        &self,
        tenant: &Tenant,
        encoder: &str,
        dim: usize,
        f: impl FnOnce(&KeyIndex) -> Result<T>,
    ) -> Result<T> {
        let mut indexes = self
            .indexes
            .lock()
            .map_err(|_| Error::storage("index lock poisoned"))?;
        let key = (tenant.clone(), encoder.to_owned());
        match indexes.get_mut(&key) {
            Some(index) => {
                index.refresh(self.store.as_ref())?;
            }
            None => {
                // A large memory without a saved graph is searched exactly while the graph
                // is built in the background (minutes at 100,000 keys), not after.
                let (index, origin) = KeyIndex::open_background(
                    self.store.as_ref(),
                    tenant,
                    encoder,
                    dim,
                    &self.config.index_dir(),
                    rap_memory::HNSW_THRESHOLD,
                )?;
                tracing::debug!(?origin, keys = index.len(), "key index ready");
                indexes.insert(key.clone(), index);
            }
        }
        let index = indexes
            .get(&key)
            .ok_or_else(|| Error::storage("index vanished"))?;
        f(index)
    }
}

/// Images decoded by [`Engine::image_from_bytes`], kept until they are stored (their keys need
/// the pixels) and then handed over: the most recent few, within a pixel budget, so a check
/// that is never followed by a store costs memory only until newer ones push it out.
#[derive(Default)]
struct Checked {
    images: std::collections::VecDeque<(ImageId, RgbImage)>,
}

impl Checked {
    /// At most this many images are kept...
    const MAX_IMAGES: usize = 8;
    /// ...and at most this many pixels in all (about 48 MB): a 12-megapixel phone photo fits.
    const MAX_PIXELS: u64 = 16_000_000;

    fn keep(&mut self, id: ImageId, rgb: RgbImage) {
        let pixels = |rgb: &RgbImage| u64::from(rgb.width()) * u64::from(rgb.height());
        if pixels(&rgb) > Self::MAX_PIXELS {
            return;
        }
        self.images.retain(|(kept, _)| *kept != id);
        self.images.push_back((id, rgb));
        while self.images.len() > Self::MAX_IMAGES
            || self.images.iter().map(|(_, i)| pixels(i)).sum::<u64>() > Self::MAX_PIXELS
        {
            self.images.pop_front();
        }
    }

    fn take(&mut self, id: &ImageId) -> Option<RgbImage> {
        let at = self.images.iter().position(|(kept, _)| kept == id)?;
        self.images.remove(at).map(|(_, rgb)| rgb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ImageId {
        ImageId(format!("{n:064x}"))
    }

    #[test]
    fn checked_images_are_handed_over_once_and_the_oldest_make_room() {
        let mut checked = Checked::default();
        checked.keep(id(1), RgbImage::new(10, 10));
        assert_eq!(checked.take(&id(1)).map(|i| i.width()), Some(10));
        assert!(checked.take(&id(1)).is_none(), "handed over once");
        for n in 0..10 {
            checked.keep(id(n), RgbImage::new(4, 4));
        }
        assert!(checked.take(&id(1)).is_none(), "pushed out by newer ones");
        assert!(checked.take(&id(9)).is_some());
        // Two 3000 x 3000 images do not fit the budget together; one larger than it is not kept.
        checked.keep(id(20), RgbImage::new(3000, 3000));
        checked.keep(id(21), RgbImage::new(3000, 3000));
        assert!(checked.take(&id(20)).is_none());
        assert!(checked.take(&id(21)).is_some());
        checked.keep(id(22), RgbImage::new(5000, 4000));
        assert!(checked.take(&id(22)).is_none());
    }
}
