//! Helpers for the rap-dataset tests: the shared data, small photo-folder subsets, file trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A path under the shared data sets (`../shared/datasets` beside the repository).
pub fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets")
        .join(rel)
}

/// The committed COCO-format annotations for a few dreambooth-dev photos.
pub fn coco_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dreambooth-coco.json")
}

/// A folder of links to some dreambooth-dev subjects (the data is not copied).
pub fn subset(dir: &Path, subjects: &[&str]) -> PathBuf {
    let root = dir.join("photos");
    std::fs::create_dir_all(&root).unwrap();
    for s in subjects {
        std::os::unix::fs::symlink(shared("dreambooth-dev").join(s), root.join(s)).unwrap();
    }
    std::fs::copy(
        shared("dreambooth-dev/classes.csv"),
        root.join("classes.csv"),
    )
    .unwrap();
    root
}

pub const SUBJECTS: &[&str] = &["backpack", "cat", "dog", "duck_toy", "red_cartoon"];

/// Every file under `dir`: relative path -> bytes.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}
