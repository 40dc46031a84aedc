//! [`KeyIndex`]: one (tenant, encoder)'s keys in a vector index, kept in step with the store.
//!
//! The store is the source of truth and its `key_log` says what changed since any version, so
//! an index is built once and then only catches up. Large indexes (HNSW) are slow to build
//! (minutes at 100,000 keys of 1280 dimensions), so [`KeyIndex::open`] can keep a saved copy
//! in a folder (a cache: deleting it only costs a rebuild) and a new process loads it and
//! replays the log from the version it was saved at.
//!
//! With [`KeyIndex::open_background`] (what the engine uses) nobody waits for that build: a
//! large memory with no usable saved copy is searched exactly (about 0.1 s per query at 100,000
//! keys) while a thread builds the HNSW graph from the same keys; the next [`KeyIndex::refresh`]
//! after it is done adopts it, replays what changed during the build, and saves it.
//!
//! A saved index is two files per (tenant, encoder): `NAME.v{VERSION}.hnsw` (usearch's format)
//! and `NAME.json` naming it, written after it (each through a temporary file and a rename),
//! so a reader sees either the old pair or the new one.

use crate::index::{ExactIndex, HnswIndex, VectorIndex};
use crate::store::{ConceptStore, KeyChange, KeyEntry};
use rap_core::{Embedding, Error, ImageId, Region, Result, Tenant};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Above this many keys a [`KeyIndex`] uses HNSW instead of exact search.
pub const HNSW_THRESHOLD: usize = 50_000;

/// A saved index is written again when loading it had to replay more than this share of its
/// keys from the log (and at least [`RESAVE_MIN_CHANGES`] changes).
const RESAVE_FRACTION: usize = 10;
const RESAVE_MIN_CHANGES: usize = 1_000;

const SAVED_FORMAT: u32 = 1;

/// What `NAME.json` says of the saved graph beside it.
#[derive(Debug, Serialize, Deserialize)]
struct SavedMeta {
    format: u32,
    tenant: String,
    encoder: String,
    dim: usize,
    /// The store's key-log version the graph is current to.
    version: u64,
    /// The graph's file name, in the same folder.
    file: String,
}

/// One (tenant, encoder)'s keys in a vector index, with what each key points at.
///
/// Built from the store once, then kept current by [`KeyIndex::refresh`], which applies only
/// the changes logged since (so another process's writes are seen too).
pub struct KeyIndex {
    tenant: Tenant,
    encoder: String,
    dim: usize,
    version: u64,
    index: Vectors,
    entries: HashMap<u64, (ImageId, Region)>,
    /// An HNSW graph being built in the background, while `index` is exact.
    building: Option<Building>,
    /// Where to save a just-adopted graph once the next refresh has made it current.
    save_after_refresh: Option<SavedFiles>,
}

/// An HNSW graph under construction on another thread.
struct Building {
    /// The key-log version of the keys it is built from.
    version: u64,
    result: std::sync::mpsc::Receiver<Result<HnswIndex>>,
    /// Where to save it once adopted.
    files: SavedFiles,
}

/// The vector index behind a [`KeyIndex`]: exact while small, HNSW when large.
enum Vectors {
    Exact(ExactIndex),
    Hnsw(HnswIndex),
}

impl Vectors {
    fn get(&self) -> &dyn VectorIndex {
        match self {
            Vectors::Exact(index) => index,
            Vectors::Hnsw(index) => index,
        }
    }

    fn get_mut(&mut self) -> &mut dyn VectorIndex {
        match self {
            Vectors::Exact(index) => index,
            Vectors::Hnsw(index) => index,
        }
    }
}

/// How [`KeyIndex::open`] came by its index (for benchmarks and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexOrigin {
    /// Built from every key in the store.
    Built,
    /// Loaded from a saved copy, then brought up to date from the log.
    Loaded { replayed: usize },
    /// Exact for now, with an HNSW graph being built in the background
    /// ([`KeyIndex::open_background`]).
    Building,
}

impl KeyIndex {
    /// Builds the index of every key the store holds for (tenant, encoder).
    pub fn build(
        store: &dyn ConceptStore,
        tenant: &Tenant,
        encoder: &str,
        dim: usize,
    ) -> Result<Self> {
        Self::build_with(store, tenant, encoder, dim, HNSW_THRESHOLD)
    }

    /// [`KeyIndex::build`] with HNSW above `hnsw_above` keys instead of [`HNSW_THRESHOLD`].
    pub fn build_with(
        store: &dyn ConceptStore,
        tenant: &Tenant,
        encoder: &str,
        dim: usize,
        hnsw_above: usize,
    ) -> Result<Self> {
        let version = store.key_version(tenant, encoder)?;
        let keys = store.keys(tenant, encoder)?;
        Self::from_keys(tenant, encoder, dim, version, keys, hnsw_above)
    }

    fn from_keys(
        tenant: &Tenant,
        encoder: &str,
        dim: usize,
        version: u64,
        keys: Vec<KeyEntry>,
        hnsw_above: usize,
    ) -> Result<Self> {
        let index = if keys.len() > hnsw_above {
            Vectors::Hnsw(HnswIndex::new(dim)?)
        } else {
            Vectors::Exact(ExactIndex::new(dim))
        };
        let mut this = KeyIndex {
            tenant: tenant.clone(),
            encoder: encoder.to_owned(),
            dim,
            version,
            index,
            entries: HashMap::with_capacity(keys.len()),
            building: None,
            save_after_refresh: None,
        };
        for entry in &keys {
            this.check_dim(entry)?;
        }
        match &mut this.index {
            Vectors::Hnsw(hnsw) => {
                let items: Vec<(u64, &[f32])> = keys
                    .iter()
                    .map(|e| (e.key, e.embedding.as_slice()))
                    .collect();
                hnsw.insert_batch(&items)?;
            }
            Vectors::Exact(exact) => {
                for entry in &keys {
                    exact.insert(entry.key, entry.embedding.as_slice())?;
                }
            }
        }
        this.entries
            .extend(keys.into_iter().map(|e| (e.key, (e.image, e.region))));
        Ok(this)
    }

    /// Like [`KeyIndex::build`], but an HNSW index is loaded from `saved_dir` when a usable
    /// copy is there (then brought up to date), and saved there after being built. A missing,
    /// stale-format or unreadable copy is rebuilt, never trusted: the store decides.
    pub fn open(
        store: &dyn ConceptStore,
        tenant: &Tenant,
        encoder: &str,
        dim: usize,
        saved_dir: &Path,
    ) -> Result<(Self, IndexOrigin)> {
        Self::open_with(store, tenant, encoder, dim, saved_dir, HNSW_THRESHOLD)
    }

    /// [`KeyIndex::open`] with HNSW above `hnsw_above` keys instead of [`HNSW_THRESHOLD`].
    pub fn open_with(
        store: &dyn ConceptStore,
        tenant: &Tenant,
        encoder: &str,
        dim: usize,
        saved_dir: &Path,
        hnsw_above: usize,
    ) -> Result<(Self, IndexOrigin)> {
        Self::open_inner(store, tenant, encoder, dim, saved_dir, hnsw_above, false)
    }

    /// Like [`KeyIndex::open`], but when the HNSW graph has to be built it is built on another
    /// thread: until a later [`KeyIndex::refresh`] adopts it, searches are exact.
    pub fn open_background(
        store: &dyn ConceptStore,
        tenant: &Tenant,
        encoder: &str,
        dim: usize,
        saved_dir: &Path,
        hnsw_above: usize,
    ) -> Result<(Self, IndexOrigin)> {
        Self::open_inner(store, tenant, encoder, dim, saved_dir, hnsw_above, true)
    }

    fn open_inner(
        store: &dyn ConceptStore,
        tenant: &Tenant,
        encoder: &str,
        dim: usize,
        saved_dir: &Path,
        hnsw_above: usize,
        background: bool,
    ) -> Result<(Self, IndexOrigin)> {
        let files = SavedFiles::new(saved_dir, tenant, encoder);
        if let Some(mut this) = Self::load_saved(store, tenant, encoder, dim, &files)? {
            let replayed = this.refresh(store)?;
            if this.len() == this.entries.len() {
                if replayed > RESAVE_MIN_CHANGES.max(this.len() / RESAVE_FRACTION) {
                    this.save_quietly(&files);
                }
                return Ok((this, IndexOrigin::Loaded { replayed }));
            }
            tracing::warn!(
                "saved index {} disagrees with the store ({} vectors, {} keys); rebuilding",
                files.meta.display(),
                this.len(),
                this.entries.len()
            );
        }
        let version = store.key_version(tenant, encoder)?;
        let keys = store.keys(tenant, encoder)?;
        if background && keys.len() > hnsw_above {
            let vectors: Vec<(u64, Vec<f32>)> = keys
                .iter()
                .map(|e| (e.key, e.embedding.as_slice().to_vec()))
                .collect();
            let mut this = Self::from_keys(tenant, encoder, dim, version, keys, usize::MAX)?;
            let (tx, result) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("hnsw-build".into())
                .spawn(move || {
                    let built = HnswIndex::new(dim).and_then(|mut hnsw| {
                        let items: Vec<(u64, &[f32])> =
                            vectors.iter().map(|(k, v)| (*k, v.as_slice())).collect();
                        hnsw.insert_batch(&items).map(|()| hnsw)
                    });
                    let _ = tx.send(built);
                })
                .map_err(|e| Error::storage(format!("cannot start the index build: {e}")))?;
            this.building = Some(Building {
                version,
                result,
                files,
            });
            return Ok((this, IndexOrigin::Building));
        }
        let this = Self::from_keys(tenant, encoder, dim, version, keys, hnsw_above)?;
        this.save_quietly(&files);
        Ok((this, IndexOrigin::Built))
    }

    /// Whether an HNSW graph is still being built in the background.
    pub fn is_building(&self) -> bool {
        self.building.is_some()
    }

    /// Waits for the background build, if any, then adopts it (see [`KeyIndex::refresh`]).
    pub fn finish_building(&mut self, store: &dyn ConceptStore) -> Result<usize> {
        if let Some(building) = self.building.take() {
            let built = building
                .result
                .recv()
                .map_err(|_| Error::storage("the background index build stopped unexpectedly"));
            self.adopt(built.and_then(|b| b), building.version, building.files);
        }
        self.refresh(store)
    }

    /// Takes the background build's graph when it is done; a failed build leaves the exact
    /// index in place (it is only slower).
    fn adopt_if_built(&mut self) {
        let Some(building) = &self.building else {
            return;
        };
        let built = match building.result.try_recv() {
            Ok(built) => built,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(Error::storage(
                "the background index build stopped unexpectedly",
            )),
        };
        if let Some(building) = self.building.take() {
            self.adopt(built, building.version, building.files);
        }
    }

    /// Switches to `built` (current to `version`); the caller's refresh then replays the
    /// changes logged since (an insert replaces, a removal of an absent key is a no-op), and
    /// the graph is saved once current.
    fn adopt(&mut self, built: Result<HnswIndex>, version: u64, files: SavedFiles) {
        match built {
            Ok(hnsw) => {
                self.index = Vectors::Hnsw(hnsw);
                self.version = version;
                self.save_after_refresh = Some(files);
            }
            Err(e) => tracing::warn!("background index build failed, staying exact: {e}"),
        }
    }

    fn load_saved(
        store: &dyn ConceptStore,
        tenant: &Tenant,
        encoder: &str,
        dim: usize,
        files: &SavedFiles,
    ) -> Result<Option<Self>> {
        let Ok(text) = std::fs::read_to_string(&files.meta) else {
            return Ok(None);
        };
        let meta: SavedMeta = match serde_json::from_str(&text) {
            Ok(meta) => meta,
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", files.meta.display());
                return Ok(None);
            }
        };
        let current = store.key_version(tenant, encoder)?;
        let usable = meta.format == SAVED_FORMAT
            && meta.tenant == tenant.as_str()
            && meta.encoder == encoder
            && meta.dim == dim
            && meta.version <= current
            && !meta.file.contains(['/', '\\']);
        if !usable {
            return Ok(None);
        }
        let index = match HnswIndex::load(&files.dir.join(&meta.file), dim) {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!("ignoring saved index: {e}");
                return Ok(None);
            }
        };
        // Keys added after the save are in the locations and come again from the log (an
        // insert replaces); keys removed after it are absent here and removed by the log.
        let entries = store
            .key_locations(tenant, encoder)?
            .into_iter()
            .map(|l| (l.key, (l.image, l.region)))
            .collect();
        Ok(Some(KeyIndex {
            tenant: tenant.clone(),
            encoder: encoder.to_owned(),
            dim,
            version: meta.version,
            index: Vectors::Hnsw(index),
            entries,
            building: None,
            save_after_refresh: None,
        }))
    }

    /// Saves an HNSW index; a failure only costs the next process a rebuild, so it is logged.
    fn save_quietly(&self, files: &SavedFiles) {
        if let Err(e) = self.save(files) {
            tracing::warn!("could not save the vector index: {e}");
        }
    }

    fn save(&self, files: &SavedFiles) -> Result<()> {
        let Vectors::Hnsw(hnsw) = &self.index else {
            return Ok(());
        };
        std::fs::create_dir_all(&files.dir).map_err(|e| Error::io(&files.dir, e))?;
        let name = format!("{}.v{}.hnsw", files.stem, self.version);
        let graph = files.dir.join(&name);
        let tmp = files.temporary(&name);
        hnsw.save(&tmp)?;
        std::fs::rename(&tmp, &graph).map_err(|e| Error::io(&graph, e))?;
        let meta = SavedMeta {
            format: SAVED_FORMAT,
            tenant: self.tenant.as_str().to_owned(),
            encoder: self.encoder.clone(),
            dim: self.dim,
            version: self.version,
            file: name,
        };
        let text = serde_json::to_string_pretty(&meta)
            .map_err(|e| Error::storage(format!("index metadata: {e}")))?;
        let tmp = files.temporary(&format!("{}.json", files.stem));
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &files.meta).map_err(|e| Error::io(&files.meta, e))?;
        files.remove_older_than(self.version);
        Ok(())
    }

    fn check_dim(&self, entry: &KeyEntry) -> Result<()> {
        if entry.embedding.dim() != self.dim {
            return Err(Error::storage(format!(
                "key {} of encoder {} has {} dimensions, expected {}",
                entry.key,
                self.encoder,
                entry.embedding.dim(),
                self.dim
            )));
        }
        Ok(())
    }

    fn add_entry(&mut self, entry: KeyEntry) -> Result<()> {
        self.check_dim(&entry)?;
        self.index
            .get_mut()
            .insert(entry.key, entry.embedding.as_slice())?;
        self.entries.insert(entry.key, (entry.image, entry.region));
        Ok(())
    }

    /// Applies the store's changes since this index was last current. Returns how many.
    /// A graph finished by a background build is adopted first.
    pub fn refresh(&mut self, store: &dyn ConceptStore) -> Result<usize> {
        self.adopt_if_built();
        let (changes, version) =
            store.key_changes_since(&self.tenant, &self.encoder, self.version)?;
        let mut added = Vec::new();
        for change in &changes {
            match *change {
                KeyChange::Added(key) => added.push(key),
                KeyChange::Removed(key) => {
                    added.retain(|k| *k != key);
                    self.index.get_mut().remove(key)?;
                    self.entries.remove(&key);
                }
            }
        }
        for entry in store.keys_by_id(&self.tenant, &self.encoder, &added)? {
            self.add_entry(entry)?;
        }
        self.version = version;
        if let Some(files) = self.save_after_refresh.take() {
            self.save_quietly(&files);
        }
        Ok(changes.len())
    }

    pub fn len(&self) -> usize {
        self.index.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.get().is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn encoder(&self) -> &str {
        &self.encoder
    }

    /// True when searches are approximate (HNSW).
    pub fn is_approximate(&self) -> bool {
        matches!(self.index, Vectors::Hnsw(_))
    }

    /// The `k` nearest keys to `query`, best first, with the image and region each points at.
    pub fn search(&self, query: &Embedding, k: usize) -> Result<Vec<(f32, &ImageId, &Region)>> {
        Ok(self
            .index
            .get()
            .search(query.as_slice(), k)?
            .into_iter()
            .filter_map(|(key, score)| self.entries.get(&key).map(|(i, r)| (score, i, r)))
            .collect())
    }
}

/// The file names of one (tenant, encoder)'s saved index.
struct SavedFiles {
    dir: PathBuf,
    /// `ENCODER-HASH`: the encoder id made safe for a file name, plus a hash of the exact id
    /// so that two ids that sanitise alike do not share files.
    stem: String,
    meta: PathBuf,
}

impl SavedFiles {
    fn new(root: &Path, tenant: &Tenant, encoder: &str) -> Self {
        // Tenant names are already safe path components (letters, digits, '-', '_', '.').
        let dir = root.join(tenant.as_str());
        let safe: String = encoder
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let hash = hex::encode(&Sha256::digest(encoder.as_bytes())[..4]);
        let stem = format!("{safe}-{hash}");
        let meta = dir.join(format!("{stem}.json"));
        SavedFiles { dir, stem, meta }
    }

    fn temporary(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.tmp{}", std::process::id()))
    }

    /// Removes this encoder's graphs saved at versions before `version` (another process
    /// may have saved a newer one meanwhile: that one stays).
    fn remove_older_than(&self, version: u64) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let prefix = format!("{}.v", self.stem);
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(saved) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|n| n.strip_suffix(".hnsw"))
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            if saved < version {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
