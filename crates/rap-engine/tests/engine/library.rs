//! The photo library (`rap_engine::library`): a folder indexed once, then searched for any
//! concept - one added after the indexing included - with retrieval's own decision, without
//! decoding a photo again. Shown with the mean-colour test encoder.

use crate::common::png;
use rap_core::{NewConcept, Tenant};
use rap_engine::library::{ScanReport, Verdict};
use rap_engine::{Engine, RetrieveOptions};
use std::path::Path;

fn plain(rgb: [u8; 3]) -> image::RgbImage {
    image::RgbImage::from_pixel(64, 64, image::Rgb(rgb))
}

fn add(engine: &Engine, tenant: &Tenant, name: &str, rgb: [u8; 3]) {
    let new = NewConcept {
        name: name.into(),
        ..Default::default()
    };
    let image = engine.image_from_bytes(png(&plain(rgb))).unwrap();
    engine.add_concept(tenant, &new, vec![image]).unwrap();
}

fn options() -> RetrieveOptions {
    RetrieveOptions {
        top_k: 10,
        window_scales: vec![0.5],
        cascade: None,
        ..RetrieveOptions::default()
    }
}

fn scan(engine: &Engine, tenant: &Tenant, dir: &Path) -> ScanReport {
    let mut calls = 0;
    let report = engine
        .library_add(tenant, &[dir.to_path_buf()], &options(), 2, &mut |p| {
            calls += 1;
            assert!(p.done <= p.total);
        })
        .unwrap();
    assert_eq!(calls, report.indexed + report.copied + report.failed.len());
    report
}

/// The photos' file names where `name` is found, sorted.
fn found(engine: &Engine, tenant: &Tenant, name: &str, options: &RetrieveOptions) -> Vec<String> {
    let mut names: Vec<String> = engine
        .library_find(tenant, name, 100, options)
        .unwrap()
        .photos
        .into_iter()
        .map(|h| {
            assert!((0.0..=1.0).contains(&h.confidence) && h.confidence > 0.0);
            file_name(&h.path)
        })
        .collect();
    names.sort();
    names
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_folder_is_indexed_once_and_searched_for_concepts_old_and_new() {
    let data = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let p = photos.path();
    std::fs::create_dir(p.join("sub")).unwrap();
    std::fs::write(p.join("red.png"), png(&plain([230, 5, 5]))).unwrap();
    std::fs::write(p.join("sub/blue.png"), png(&plain([5, 5, 230]))).unwrap();
    std::fs::write(p.join("green.png"), png(&plain([5, 230, 5]))).unwrap();
    // Left half red, right half blue.
    let split = image::RgbImage::from_fn(400, 200, |x, _| {
        image::Rgb(if x < 200 { [230, 5, 5] } else { [5, 5, 230] })
    });
    std::fs::write(p.join("split.png"), png(&split)).unwrap();
    std::fs::write(p.join("broken.jpg"), b"not a jpeg").unwrap();
    std::fs::write(p.join("phone.heic"), b"....ftypheic").unwrap();
    std::fs::write(p.join("notes.txt"), b"not a photo").unwrap();

    let tenant = Tenant::new("t").unwrap();
    let engine = crate::common::mean_colour_engine(data.path());
    add(&engine, &tenant, "red", [230, 5, 5]);
    add(&engine, &tenant, "blue", [5, 5, 230]);

    let report = scan(&engine, &tenant, p);
    assert_eq!(
        (
            report.found,
            report.indexed,
            report.unsupported,
            report.failed.len()
        ),
        (5, 4, 1, 1),
        "{report:?}"
    );
    assert!(report.failed[0].0.ends_with("broken.jpg"));
    // Every region retrieval encodes, of each photo (the broken one has none).
    let regions = |w, h| rap_engine::retrieve::proposals(w, h, &options().window_scales).len();
    assert_eq!(report.regions, 3 * regions(64, 64) + regions(400, 200));
    assert!(regions(400, 200) > 1);

    assert_eq!(
        found(&engine, &tenant, "red", &options()),
        ["red.png", "split.png"]
    );
    assert_eq!(
        found(&engine, &tenant, "blue", &options()),
        ["blue.png", "split.png"]
    );
    let red = engine.library_find(&tenant, "red", 1, &options()).unwrap();
    assert_eq!(
        (red.total, red.photos.len()),
        (2, 1),
        "the limit lists fewer"
    );
    let in_split = engine
        .library_find(&tenant, "red", 10, &options())
        .unwrap()
        .photos
        .into_iter()
        .find(|h| h.path.ends_with("split.png"))
        .unwrap();
    assert!(
        in_split.bbox.x2 <= 200.0,
        "red's box is in the red half: {:?}",
        in_split.bbox
    );

    // Who is in a photo: the same as retrieving it, without decoding it.
    let (photo, who) = engine
        .library_who(&tenant, &p.join("split.png"), &options())
        .unwrap();
    assert_eq!((photo.width, photo.height), (400, 200));
    let retrieved = engine
        .retrieve(&tenant, Some(&png(&split)), None, &options())
        .unwrap();
    let who: Vec<(String, [f32; 4])> = who
        .into_iter()
        .map(|c| (c.name, [c.bbox.x1, c.bbox.y1, c.bbox.x2, c.bbox.y2]))
        .collect();
    let seen: Vec<(String, [f32; 4])> = retrieved
        .hits
        .into_iter()
        .map(|h| {
            let b = h.bbox.unwrap();
            (h.name, [b.x1, b.y1, b.x2, b.y2])
        })
        .collect();
    assert_eq!(who, seen);

    // A concept added after the indexing is searched at once.
    add(&engine, &tenant, "green", [5, 230, 5]);
    assert_eq!(found(&engine, &tenant, "green", &options()), ["green.png"]);

    // Nothing changed: nothing is read again.
    let again = scan(&engine, &tenant, p);
    assert_eq!(
        (again.unchanged, again.indexed, again.regions),
        (4, 0, 0),
        "{again:?}"
    );

    // Another tenant has no library.
    let other = Tenant::new("other").unwrap();
    add(&engine, &other, "red", [230, 5, 5]);
    assert!(found(&engine, &other, "red", &options()).is_empty());
}

#[test]
fn sync_keeps_a_moved_photo_without_encoding_it_and_forgets_a_deleted_one() {
    let data = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let p = photos.path();
    std::fs::write(p.join("red.png"), png(&plain([230, 5, 5]))).unwrap();
    std::fs::write(p.join("blue.png"), png(&plain([5, 5, 230]))).unwrap();
    let tenant = Tenant::new("t").unwrap();
    let engine = crate::common::mean_colour_engine(data.path());
    add(&engine, &tenant, "red", [230, 5, 5]);
    scan(&engine, &tenant, p);

    std::fs::create_dir(p.join("moved")).unwrap();
    std::fs::rename(p.join("red.png"), p.join("moved/red.png")).unwrap();
    std::fs::remove_file(p.join("blue.png")).unwrap();
    let report = engine
        .library_sync(&tenant, &options(), 2, &mut |_| {})
        .unwrap();
    assert_eq!(
        (
            report.copied,
            report.indexed,
            report.removed,
            report.regions
        ),
        (1, 0, 2, 0),
        "{report:?}"
    );
    assert_eq!(found(&engine, &tenant, "red", &options()), ["red.png"]);
    let (stats, roots) = engine.library_stats(&tenant).unwrap();
    assert_eq!((stats.photos, roots.len()), (1, 1));
    assert!(engine
        .library_who(&tenant, &p.join("red.png"), &options())
        .is_err());
}

#[test]
fn a_close_photo_is_suggested_and_confirming_it_makes_it_found() {
    let data = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let p = photos.path();
    std::fs::write(p.join("red.png"), png(&plain([230, 5, 5]))).unwrap();
    std::fs::write(p.join("pink.png"), png(&plain([230, 60, 60]))).unwrap();
    std::fs::write(p.join("blue.png"), png(&plain([5, 5, 230]))).unwrap();
    let tenant = Tenant::new("t").unwrap();
    let engine = crate::common::mean_colour_engine(data.path());
    add(&engine, &tenant, "red", [230, 5, 5]);
    add(&engine, &tenant, "blue", [5, 5, 230]);
    scan(&engine, &tenant, p);

    // A strict floor: pink (cosine about 0.95 to red) is close but not found.
    let strict = options().with_fixed_floor(0.98);
    assert_eq!(found(&engine, &tenant, "red", &strict), ["red.png"]);
    let suggested = engine.library_suggest(&tenant, "red", 10, &strict).unwrap();
    let names: Vec<String> = suggested
        .photos
        .iter()
        .map(|h| file_name(&h.path))
        .collect();
    assert_eq!(names, ["pink.png"]);

    let red = engine
        .library_confirm(&tenant, "red", &p.join("pink.png"), None, Verdict::Confirm)
        .unwrap();
    assert_eq!(red.images.len(), 2);
    assert_eq!(
        found(&engine, &tenant, "red", &strict),
        ["pink.png", "red.png"]
    );
    assert!(engine
        .library_suggest(&tenant, "red", 10, &strict)
        .unwrap()
        .photos
        .is_empty());

    let blue = engine
        .library_confirm(&tenant, "blue", &p.join("pink.png"), None, Verdict::Reject)
        .unwrap();
    assert_eq!(blue.negatives.len(), 1);
    // A photo that is not indexed is refused with a clear error.
    let e = engine
        .library_confirm(&tenant, "red", &p.join("nope.png"), None, Verdict::Confirm)
        .unwrap_err();
    assert!(e.to_string().contains("nope.png"), "{e}");
}
