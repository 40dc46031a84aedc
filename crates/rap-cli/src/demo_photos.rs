//! The demo photos that come inside the `rap` binary: two small photos each of four
//! DreamBooth subjects (CC-BY 4.0; sources and changes in `assets/demo/SOURCES.txt`). They make
//! `rap demo` and `rap bench retrieval` work from a clone with nothing beside it, wherever the
//! command runs from: no default path depends on the working directory.

use std::path::Path;

/// One embedded photo.
pub struct Photo {
    /// `SUBJECT/NN.jpg`, as in the dataset it comes from.
    pub label: &'static str,
    pub bytes: &'static [u8],
}

/// One subject: the first photo is the one to remember, the second the one to find it in.
pub struct Subject {
    pub name: &'static str,
    pub photos: [Photo; 2],
}

macro_rules! subject {
    ($name:literal) => {
        Subject {
            name: $name,
            photos: [
                Photo {
                    label: concat!($name, "/00.jpg"),
                    bytes: include_bytes!(concat!("../assets/demo/", $name, "/00.jpg")),
                },
                Photo {
                    label: concat!($name, "/01.jpg"),
                    bytes: include_bytes!(concat!("../assets/demo/", $name, "/01.jpg")),
                },
            ],
        }
    };
}

/// The built-in subjects, in the order the demo uses them.
pub const SUBJECTS: [Subject; 4] = [
    subject!("dog"),
    subject!("cat"),
    subject!("clock"),
    subject!("duck_toy"),
];

/// Writes the photos under `dir` as one folder of photos per subject (the layout of
/// dreambooth-dev), for commands that read a photo folder.
pub fn write_folders(dir: &Path) -> rap_core::Result<()> {
    for subject in &SUBJECTS {
        let folder = dir.join(subject.name);
        std::fs::create_dir_all(&folder).map_err(|e| rap_core::Error::io(&folder, e))?;
        for photo in &subject.photos {
            let path = dir.join(photo.label);
            std::fs::write(&path, photo.bytes).map_err(|e| rap_core::Error::io(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_photo_decodes_and_is_small() {
        for subject in &SUBJECTS {
            for photo in &subject.photos {
                assert!(photo.bytes.len() <= 60_000, "{} is too big", photo.label);
                let rgb = rap_image::decode(photo.bytes, &rap_image::Limits::default())
                    .unwrap_or_else(|e| panic!("{}: {e}", photo.label));
                assert!(rgb.width() >= 224 && rgb.height() >= 224, "{}", photo.label);
            }
        }
    }

    #[test]
    fn folders_hold_each_subject_photos() {
        let dir = tempfile::tempdir().unwrap();
        write_folders(dir.path()).unwrap();
        for subject in &SUBJECTS {
            let files = std::fs::read_dir(dir.path().join(subject.name))
                .unwrap()
                .count();
            assert_eq!(files, 2, "{}", subject.name);
        }
    }
}
