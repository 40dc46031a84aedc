//! Compares average and GeM (p = 3) pooling of EfficientNet-Lite0 features for instance
//! retrieval on a folder of subjects (like `dreambooth-dev`): the first photo of each subject
//! (sorted by name) is its reference, every other photo a query against all references.
//! Prints top-1 accuracy and MRR per pooling.
//!
//! `cargo run -p rap-vision --example pooling_eval -- WEIGHTS.pth DATASET_DIR`

use rap_core::Embedding;
use rap_vision::{EfficientNetLite0Encoder, Pooling};
use std::path::{Path, PathBuf};

fn photos(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| {
        p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "jpg" | "jpeg" | "png" | "webp"
            )
        })
    });
    v.sort();
    v
}

fn main() {
    let mut args = std::env::args().skip(1);
    let weights = args
        .next()
        .expect("usage: pooling_eval WEIGHTS.pth DATASET_DIR");
    let dataset = PathBuf::from(
        args.next()
            .expect("usage: pooling_eval WEIGHTS.pth DATASET_DIR"),
    );
    let enc = EfficientNetLite0Encoder::load(Path::new(&weights)).expect("load");
    let mut subjects: Vec<PathBuf> = std::fs::read_dir(&dataset)
        .expect("dataset dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subjects.sort();
    let mut images = Vec::new(); // (subject index, is reference, image)
    for (s, dir) in subjects.iter().enumerate() {
        for (i, p) in photos(dir).into_iter().enumerate() {
            let bytes = std::fs::read(&p).expect("read");
            let img = rap_image::decode(&bytes, &rap_image::Limits::default()).expect("decode");
            images.push((s, i == 0, img));
        }
    }
    println!("{} subjects, {} photos", subjects.len(), images.len());
    for (label, pooling) in [
        ("average", Pooling::Average),
        ("gem3", Pooling::Gem { p: 3.0 }),
    ] {
        let rgb: Vec<image::RgbImage> = images.iter().map(|(_, _, i)| i.clone()).collect();
        let t = std::time::Instant::now();
        let emb: Vec<Embedding> = enc.embed_with(&rgb, pooling).expect("embed");
        let secs = t.elapsed().as_secs_f64();
        let refs: Vec<(usize, &Embedding)> = images
            .iter()
            .zip(&emb)
            .filter(|((_, r, _), _)| *r)
            .map(|((s, _, _), e)| (*s, e))
            .collect();
        let (mut n, mut top1, mut mrr) = (0usize, 0usize, 0f64);
        for ((s, is_ref, _), e) in images.iter().zip(&emb) {
            if *is_ref {
                continue;
            }
            let mut scores: Vec<(f32, usize)> =
                refs.iter().map(|(rs, re)| (e.cosine(re), *rs)).collect();
            scores.sort_by(|a, b| b.0.total_cmp(&a.0));
            let rank = scores
                .iter()
                .position(|(_, rs)| rs == s)
                .unwrap_or(scores.len())
                + 1;
            n += 1;
            top1 += (rank == 1) as usize;
            mrr += 1.0 / rank as f64;
        }
        println!(
            "{label}: top-1 {:.3}, MRR {:.3} over {n} queries ({:.0} ms per image to embed)",
            top1 as f64 / n as f64,
            mrr / n as f64,
            secs * 1e3 / rgb.len() as f64
        );
    }
}
