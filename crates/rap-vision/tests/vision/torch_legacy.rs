//! The legacy torch reader against a checkpoint written by torch itself
//! (`tools/golden/torch_legacy_fixture.py`): every dtype, strided and offset views, shared
//! storages, a parameter, and a non-tensor entry; plus corrupted copies of it.

use candle_core::DType;
use rap_vision::torch_legacy::{parse_legacy_pth, read_legacy_pth};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn values(t: &candle_core::Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn reads_every_tensor_as_torch_wrote_it() {
    let tensors = read_legacy_pth(&fixtures().join("legacy_small.pth")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("legacy_small.json")).unwrap())
            .unwrap();
    let expected = expected.as_object().unwrap();
    assert_eq!(tensors.len(), expected.len(), "{:?}", tensors.keys());
    assert!(!tensors.contains_key("not_a_tensor"));
    for (name, want) in expected {
        let t = &tensors[name];
        let shape: Vec<usize> = serde_json::from_value(want["shape"].clone()).unwrap();
        assert_eq!(t.dims(), &shape[..], "{name}");
        let dtype = match want["dtype"].as_str().unwrap() {
            "float32" => DType::F32,
            "float16" => DType::F16,
            "bfloat16" => DType::BF16,
            "float64" => DType::F64,
            "int64" => DType::I64,
            "int32" => DType::I32,
            "uint8" => DType::U8,
            other => panic!("{other}"),
        };
        assert_eq!(t.dtype(), dtype, "{name}");
        let want: Vec<f64> = serde_json::from_value(want["values"].clone()).unwrap();
        let got = values(t);
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            // serde_json's float parsing may be off by one ulp of f64.
            assert!(
                (g - w).abs() <= 1e-14 * w.abs().max(1e-300),
                "{name}: {got:?} vs {want:?}"
            );
        }
    }
    // The non-contiguous views came out right: transposed[i][j] = base[j][i].
    let tr = tensors["transposed"].to_vec2::<f32>().unwrap();
    assert_eq!((tr[1][0], tr[0][1]), (1.0 / 8.0 - 1.0, 6.0 / 8.0 - 1.0));
}

#[test]
fn corrupted_checkpoints_give_errors_not_panics() {
    let good = std::fs::read(fixtures().join("legacy_small.pth")).unwrap();
    // Truncated anywhere.
    for cut in [0, 1, 10, 20, 100, 500, good.len() / 2, good.len() - 1] {
        assert!(
            parse_legacy_pth(&good[..cut], "cut.pth").is_err(),
            "cut at {cut}"
        );
    }
    // Single-byte corruptions all over the file: an error or a (wrong) result, never a panic.
    for i in (0..good.len()).step_by(3) {
        for b in [0x00, 0xff, b'(', b'h', 0x8a] {
            let mut bad = good.clone();
            bad[i] = b;
            let _ = parse_legacy_pth(&bad, "bad.pth");
        }
    }
    // A storage that claims far more elements than the file holds is refused before
    // allocating: patch the first storage's element count (the 8 bytes after the key list).
    let tail_start = good.windows(2).rposition(|w| w == b"e.").unwrap() + 2;
    let mut huge = good.clone();
    huge[tail_start..tail_start + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let err = parse_legacy_pth(&huge, "huge.pth").unwrap_err().to_string();
    assert!(err.contains("huge.pth") && err.contains("storage"), "{err}");
}
