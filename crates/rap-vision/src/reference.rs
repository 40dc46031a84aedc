//! The image towers of the catalogued Hugging Face checkpoints at their published sizes, with
//! all-zero weights: the same code and the same work as the real models, for benchmarks where
//! the real weights cannot be downloaded (see `rap models bench`).

use crate::hf;
use candle_core::Device;
use rap_core::{Error, Result};

/// The checkpoints [`reference_configs`] knows: the Hugging Face Hub catalogue's encoders.
pub const CATALOGUED: &[&str] = &[
    "clip-vit-base-patch32",
    "clip-vit-large-patch14",
    "clip-vit-large-patch14-336",
    "dinov2-small",
    "dinov2-base",
    "siglip-base-patch16-224",
];

/// `config.json` and `preprocessor_config.json` of a catalogued checkpoint's image tower, with
/// the published sizes (for benchmarks: its weights cannot be had here).
pub fn reference_configs(name: &str) -> Option<(String, String)> {
    let clip = |hidden: u32,
                inter: u32,
                layers: u32,
                heads: u32,
                patch: u32,
                image: u32,
                proj: u32| {
        (
            format!(
                r#"{{"model_type": "clip_vision_model", "hidden_size": {hidden}, "intermediate_size": {inter},
                "num_hidden_layers": {layers}, "num_attention_heads": {heads}, "patch_size": {patch},
                "image_size": {image}, "projection_dim": {proj}, "hidden_act": "quick_gelu"}}"#
            ),
            format!(
                r#"{{"image_processor_type": "CLIPImageProcessor", "size": {{"shortest_edge": {image}}},
                "crop_size": {{"height": {image}, "width": {image}}}, "do_center_crop": true, "resample": 3,
                "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}}"#
            ),
        )
    };
    let dinov2 = |hidden: u32, heads: u32| {
        (
            format!(
                r#"{{"model_type": "dinov2", "hidden_size": {hidden}, "num_hidden_layers": 12,
                "num_attention_heads": {heads}, "mlp_ratio": 4, "image_size": 518, "patch_size": 14}}"#
            ),
            r#"{"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 256},
            "crop_size": {"height": 224, "width": 224}, "do_center_crop": true, "resample": 3,
            "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}"#
                .to_string(),
        )
    };
    Some(match name {
        "clip-vit-base-patch32" => clip(768, 3072, 12, 12, 32, 224, 512),
        "clip-vit-large-patch14" => clip(1024, 4096, 24, 16, 14, 224, 768),
        "clip-vit-large-patch14-336" => clip(1024, 4096, 24, 16, 14, 336, 768),
        "dinov2-small" => dinov2(384, 6),
        "dinov2-base" => dinov2(768, 12),
        "siglip-base-patch16-224" => (
            r#"{"model_type": "siglip_vision_model", "hidden_size": 768, "intermediate_size": 3072,
            "num_hidden_layers": 12, "num_attention_heads": 12, "patch_size": 16, "image_size": 224}"#
                .to_string(),
            r#"{"image_processor_type": "SiglipImageProcessor", "size": {"height": 224, "width": 224},
            "resample": 3, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}"#
                .to_string(),
        ),
        _ => return None,
    })
}

/// A catalogued checkpoint's image tower at its real size with all-zero weights: the same
/// code and the same amount of work as the real model (speed does not depend on the values),
/// for `rap models bench` where the real weights cannot be downloaded. Its embeddings are
/// meaningless. It runs on `device`.
pub fn reference_architecture(name: &str, device: &Device) -> Result<hf::HfEncoder> {
    let (config, pre) = reference_configs(name)
        .ok_or_else(|| Error::not_found("catalogued Hugging Face model", name.to_string()))?;
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    for (file, text) in [(hf::CONFIG, &config), (hf::PREPROCESSOR_CONFIG, &pre)] {
        let path = dir.path().join(file);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    let zeros = candle_nn::VarBuilder::zeros(candle_core::DType::F32, device);
    let folder = hf::HfFolder::open(dir.path())?
        .with_weights(zeros)
        .with_device(device.clone());
    hf::load_hf_folder(folder, Some("zero-weights"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rap_core::ImageEncoder;

    #[test]
    fn reference_architectures_have_the_published_sizes() {
        for (name, dim) in [("dinov2-small", 384), ("clip-vit-base-patch32", 512)] {
            let enc = reference_architecture(name, &Device::Cpu).unwrap();
            assert_eq!(enc.info().dim, dim);
            let img = image::RgbImage::new(64, 48);
            let e = enc
                .image_features(&enc.preprocess().batch(&[img]).unwrap())
                .unwrap();
            assert_eq!(e[0].len(), dim);
        }
        for name in CATALOGUED {
            assert!(reference_configs(name).is_some(), "{name}");
        }
    }
}
