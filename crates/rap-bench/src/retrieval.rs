//! `rap bench retrieval`: the Retrieve step on real photos at full size with an encoder (`rap`
//! gives the installed default encoder), in a fresh temporary memory:
//! - add-concept latency (one photo: check, store, embed its key);
//! - retrieve latency (p50/p95) and where its time goes: decode, crop + resize of the region
//!   proposals, encode, search;
//! - encoder throughput (images/s at batch 1 and batch 16, on already-resized inputs);
//! - decoding a 12-megapixel JPEG (made from one of the photos, 4000 x 3000, quality 90) at
//!   full size and as a query decodes it (at a reduced scale), and a whole retrieve with it.

use crate::report::{percentile, summary};
use crate::Progress;
use rap_core::{Error, ImageEncoder, NewConcept, Result, Tenant};
use rap_engine::{Engine, EngineConfig, RetrieveOptions};
use rap_image::{Limits, Preprocess};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Loads the encoder to measure; called once, after the dataset is found to hold photos (so
/// an empty dataset is reported before a missing model).
pub type EncoderLoader = Box<dyn FnOnce() -> Result<Arc<dyn ImageEncoder>>>;

/// What [`run`] measures, and with what.
pub struct RetrievalOptions {
    /// A folder with one folder of photos per subject: the first photo of each is remembered,
    /// the others are the queries.
    pub dataset: PathBuf,
    /// Window sizes for region proposals, as fractions of the shorter side (empty: the whole
    /// image only); `rap retrieve`'s are `RetrieveOptions::default().window_scales`.
    pub window_scales: Vec<f32>,
    /// Whether queries run the cascade (`rap_engine::cascade`), as `rap retrieve` does.
    pub cascade: bool,
    /// Queries to time at most (0: every photo that is not a reference).
    pub queries: usize,
    /// The encoder (`rap` gives the installed default encoder).
    pub encoder: EncoderLoader,
    /// The encoder's preprocessing: the crop + resize share of the encode time is measured
    /// apart with it.
    pub preprocess: Preprocess,
    /// Image limits of the engine and of the decodes timed here.
    pub limits: Limits,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Remembers one photo per subject in a temporary memory, retrieves with the others and
/// measures; returns the report.
pub fn run(options: RetrievalOptions, progress: &dyn Progress) -> Result<serde_json::Value> {
    let RetrievalOptions {
        dataset,
        window_scales,
        cascade,
        queries: max_queries,
        encoder,
        preprocess,
        limits,
    } = options;
    let subjects = rap_eval::retrieval::subjects(&dataset)?;
    if subjects.is_empty() {
        return Err(Error::invalid(format!(
            "{}: no subject folders with photos",
            dataset.display()
        )));
    }
    let encoder: Arc<dyn ImageEncoder> = encoder()?;
    let dir = crate::temp_dir()?;
    let mut config = EngineConfig::new(dir.path());
    config.limits = limits;
    let loader_encoder = encoder.clone();
    let engine = Engine::open(config, Box::new(move || Ok(Some(loader_encoder.clone()))))?;
    let tenant = Tenant::default();

    // Warm up (first-call allocations, page-in of the weights).
    let first_photo = &subjects[0].1[0];
    let warm = engine.read_image(first_photo)?;
    let warm_rgb = rap_image::decode(&warm.bytes, engine.limits())?;
    encoder.embed(std::slice::from_ref(&warm_rgb))?;

    // Remember: one photo per subject, each a full add (check, store, embed).
    progress.start(subjects.len() as u64, "remembering");
    let mut add_ms = Vec::new();
    for (name, photos) in &subjects {
        let t = Instant::now();
        let image = engine.read_image(&photos[0])?;
        let new = NewConcept {
            name: name.clone(),
            ..Default::default()
        };
        engine.add_concept(&tenant, &new, vec![image])?;
        add_ms.push(ms_since(t));
        progress.inc(1);
    }
    progress.finish();

    // Retrieve: every other photo, at full size, read into memory first.
    let mut queries: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for (_, photos) in &subjects {
        for photo in photos.iter().skip(1) {
            let bytes = std::fs::read(photo).map_err(|e| Error::io(photo, e))?;
            queries.push((photo.clone(), bytes));
        }
    }
    if max_queries > 0 {
        queries.truncate(max_queries);
    }
    let options = RetrieveOptions {
        window_scales: window_scales.clone(),
        cascade: if cascade {
            RetrieveOptions::default().cascade
        } else {
            None
        },
        ..RetrieveOptions::default()
    };
    // The first search opens the key index; time it apart from the queries.
    let t = Instant::now();
    engine.retrieve(&tenant, Some(&queries[0].1), None, &options)?;
    let first_query_ms = ms_since(t);

    progress.start(queries.len() as u64, "querying");
    let (mut total, mut decode, mut embed, mut resize, mut search) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut regions, mut stopped) = (0, 0);
    let mut pixels = 0u64;
    for (_, bytes) in &queries {
        let t = Instant::now();
        let retrieval = engine.retrieve(&tenant, Some(bytes), None, &options)?;
        total.push(ms_since(t));
        decode.push(retrieval.timings.decode_ms);
        embed.push(retrieval.timings.embed_ms);
        search.push(retrieval.timings.search_ms);
        regions += retrieval.timings.regions;
        stopped += usize::from(retrieval.timings.skipped > 0);

        // The crop + resize share of `embed`, measured apart on every region of the image
        // decoded as retrieval decodes it (reduced where that loses nothing); with the
        // cascade, a query that stopped at stage 1 resized fewer, so this is an upper bound.
        let decoded = rap_engine::pixels::decode_query(
            bytes,
            engine.limits(),
            encoder.as_ref(),
            &window_scales,
            false,
        )?;
        let (w, h) = (decoded.full_width, decoded.full_height);
        pixels += u64::from(w) * u64::from(h);
        let t = Instant::now();
        for region in rap_engine::retrieve::proposals(w, h, &window_scales) {
            preprocess.square_in_box(&decoded.image, &decoded.to_image_box(&region.bbox))?;
        }
        resize.push(ms_since(t));
        progress.inc(1);
    }
    progress.finish();
    let encode: Vec<f64> = embed
        .iter()
        .zip(&resize)
        .map(|(e, r)| (e - r).max(0.0))
        .collect();

    // Encoder throughput on inputs already at its size (so it is the network alone).
    let square = preprocess.square(&warm_rgb)?;
    let batch: Vec<_> = (0..16).map(|_| square.clone()).collect();
    let images_per_second = |n: usize, rounds: usize| -> Result<f64> {
        let t = Instant::now();
        for _ in 0..rounds {
            encoder.embed(&batch[..n])?;
        }
        Ok((n * rounds) as f64 / t.elapsed().as_secs_f64())
    };
    let batch1 = images_per_second(1, 16)?;
    let batch16 = images_per_second(16, 2)?;

    // A 12-megapixel JPEG made from the first photo.
    let big = image::imageops::resize(&warm_rgb, 4000, 3000, image::imageops::FilterType::Triangle);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&big)
        .map_err(|e| Error::invalid(format!("encoding the 12-megapixel test JPEG: {e}")))?;
    let mut decode_12mp = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        rap_image::decode(&jpeg, engine.limits())?;
        decode_12mp.push(ms_since(t));
    }
    decode_12mp.sort_by(f64::total_cmp);
    // ...decoded as a query needs it, and a whole query with it, as `rap retrieve` on a phone
    // photo.
    let mut decode_12mp_for_query = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        rap_engine::pixels::decode_query(
            &jpeg,
            engine.limits(),
            encoder.as_ref(),
            &window_scales,
            false,
        )?;
        decode_12mp_for_query.push(ms_since(t));
    }
    decode_12mp_for_query.sort_by(f64::total_cmp);
    let mut retrieve_12mp = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        engine.retrieve(&tenant, Some(&jpeg), None, &options)?;
        retrieve_12mp.push(ms_since(t));
    }

    Ok(serde_json::json!({
        "machine": format!("{} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        "encoder": encoder.info().id,
        "dataset": dataset,
        "concepts": subjects.len(),
        "queries": queries.len(),
        "mean_query_megapixels": pixels as f64 / queries.len() as f64 / 1e6,
        "window_scales": window_scales,
        "cascade": options.cascade,
        "regions_per_query": regions as f64 / queries.len() as f64,
        "stopped_at_stage_1": stopped as f64 / queries.len() as f64,
        "add_concept_one_photo": summary(add_ms),
        "first_query_with_index_open_ms": first_query_ms,
        "retrieve": summary(total),
        "retrieve_breakdown": {
            "decode": summary(decode),
            "crop_and_resize": summary(resize),
            "encode": summary(encode),
            "search": summary(search),
        },
        "encoder_images_per_second": { "batch_1": batch1, "batch_16": batch16 },
        "decode_12_megapixel_jpeg_ms": percentile(&decode_12mp, 0.5),
        "decode_12_megapixel_jpeg_for_query_ms": percentile(&decode_12mp_for_query, 0.5),
        "retrieve_12_megapixel_jpeg": summary(retrieve_12mp),
    }))
}
