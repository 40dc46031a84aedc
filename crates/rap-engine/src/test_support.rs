//! Fixtures shared by the engine's unit tests: small generated photos and a memory of two dogs
//! on an engine without an image encoder.

use crate::{Engine, EngineConfig};
use rap_core::{NewConcept, Tenant};

/// A `w` x `h` PNG whose pixels depend on `seed` (different seeds, different photos).
pub(crate) fn png(seed: u8, w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([seed, (x * 7) as u8 ^ seed, (y * 13) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// An engine with no encoder over a fresh memory holding the dogs `bo` and `dug` (category
/// "dog", one 16x16 photo each) with these infos; the folder lives as long as the `TempDir`.
pub(crate) fn two_dogs(bo_info: &str, dug_info: &str) -> (tempfile::TempDir, Engine, Tenant) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(EngineConfig::new(dir.path()), Box::new(|| Ok(None))).unwrap();
    let tenant = Tenant::new("t").unwrap();
    for (seed, name, info) in [(1, "bo", bo_info), (2, "dug", dug_info)] {
        let new = NewConcept {
            name: name.into(),
            info: info.into(),
            category: "dog".into(),
            ..Default::default()
        };
        let img = engine.image_from_bytes(png(seed, 16, 16)).unwrap();
        engine.add_concept(&tenant, &new, vec![img]).unwrap();
    }
    (dir, engine, tenant)
}
