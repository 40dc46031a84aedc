//! Fuzzing on stable Rust, as ordinary tests: [`fuzz`] runs a target on every file of its
//! committed seed corpus, then on mutations of them for a time budget, and fails on the first
//! input that makes the target panic (saving that input, so it can be replayed and committed to
//! the corpus as a regression seed). A memory bomb aborts the test process, which fails too.
//!
//! Why a loop written here: `cargo fuzz` needs a nightly compiler, and a runner that only feeds
//! random bytes (bolero's test mode) rarely gets past a file format's magic number. This loop
//! mutates real seeds the way libFuzzer does (bit flips, interesting integers, inserted,
//! deleted, repeated and spliced chunks, numbers typed into text), without its coverage
//! feedback. The mutations themselves are [`arbitrary::Arbitrary`] values drawn from random
//! bytes, so the same code could be driven by a coverage-guided engine later.
//!
//! Settings (environment):
//! - `RAP_FUZZ_SECONDS`: the budget per target (default [`DEFAULT_SECONDS`], for CI; the
//!   script `tools/fuzz/run.sh` runs longer).
//! - `RAP_FUZZ_SEED`: the random seed (default fixed, so CI runs the same inputs each time;
//!   the script draws a new one and prints it). A finding is replayed from its saved file.
//! - `RAP_FUZZ_FINDINGS`: where inputs that fail are saved (default: a `rap-fuzz-findings`
//!   folder in the temporary directory).

#![forbid(unsafe_code)]

use arbitrary::{Arbitrary, Unstructured};
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The budget per target when `RAP_FUZZ_SECONDS` is not set.
pub const DEFAULT_SECONDS: f64 = 2.0;
/// The largest input a mutation may produce.
pub const MAX_INPUT: usize = 1 << 20;

/// One change to an input. Positions are taken modulo the input's length.
#[derive(Debug, Arbitrary)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        value: u8,
    },
    /// A boundary value (0, -1, the signed extremes, powers of two) as 1, 2, 4 or 8 bytes,
    /// little- or big-endian: what length and count fields break on.
    Interesting {
        at: usize,
        which: u8,
        width: u8,
        big_endian: bool,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: u16,
    },
    Truncate {
        at: usize,
    },
    /// A chunk of the input repeated in place.
    Repeat {
        at: usize,
        len: u8,
        times: u8,
    },
    /// A chunk of another seed copied in.
    Splice {
        seed: usize,
        from: usize,
        len: u16,
        at: usize,
    },
    /// A decimal number typed over (text formats: JSON, TOML, HTTP).
    Number {
        at: usize,
        value: i64,
    },
}

const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

fn apply(m: Mutation, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
    match m {
        Mutation::FlipBit { at, bit } => {
            if !input.is_empty() {
                let at = at % input.len();
                input[at] ^= 1 << (bit % 8);
            }
        }
        Mutation::SetByte { at, value } => {
            if !input.is_empty() {
                let at = at % input.len();
                input[at] = value;
            }
        }
        Mutation::Interesting {
            at,
            which,
            width,
            big_endian,
        } => {
            let value = INTERESTING[which as usize % INTERESTING.len()];
            let width = 1usize << (width % 4);
            let bytes = if big_endian {
                value.to_be_bytes()[8 - width..].to_vec()
            } else {
                value.to_le_bytes()[..width].to_vec()
            };
            overwrite(input, pos(at, input.len()), &bytes);
        }
        Mutation::Insert { at, mut bytes } => {
            bytes.truncate(64);
            let at = pos(at, input.len());
            input.splice(at..at, bytes);
        }
        Mutation::Delete { at, len } => {
            let at = pos(at, input.len());
            let end = (at + len as usize % 256 + 1).min(input.len());
            input.drain(at..end);
        }
        Mutation::Truncate { at } => {
            let at = pos(at, input.len());
            input.truncate(at);
        }
        Mutation::Repeat { at, len, times } => {
            let at = pos(at, input.len());
            let end = (at + len as usize + 1).min(input.len());
            let chunk = input[at..end].to_vec();
            for _ in 0..times % 16 {
                input.splice(end..end, chunk.iter().copied());
            }
        }
        Mutation::Splice {
            seed,
            from,
            len,
            at,
        } => {
            let other = &seeds[seed % seeds.len()];
            let from = pos(from, other.len());
            let end = (from + len as usize % 512 + 1).min(other.len());
            let at = pos(at, input.len());
            input.splice(at..at, other[from..end].iter().copied());
        }
        Mutation::Number { at, value } => {
            let at = pos(at, input.len());
            overwrite(input, at, value.to_string().as_bytes());
        }
    }
    input.truncate(MAX_INPUT);
}

fn overwrite(input: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let end = (at + bytes.len()).min(input.len());
    input.splice(at..end, bytes.iter().copied());
}

/// Every file under `dir` (recursively, sorted by path), as bytes.
pub fn corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The seed corpus of target `name`: the files under `corpus/NAME` of this crate.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    corpus(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(name),
    )
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub execs: u64,
    pub elapsed: Duration,
    /// The slowest single input's time.
    pub slowest: Duration,
}

fn env_f64(key: &str) -> Option<f64> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

/// Runs `target` on every seed as it is, then on mutated seeds until the budget is spent.
/// Panics (failing the test) on the first input that makes `target` panic, after saving it
/// under `RAP_FUZZ_FINDINGS/NAME/` and printing its path.
pub fn fuzz(name: &str, seeds: &[Vec<u8>], target: impl Fn(&[u8])) -> Report {
    assert!(!seeds.is_empty(), "fuzz target {name} has no seeds");
    let budget = Duration::from_secs_f64(env_f64("RAP_FUZZ_SECONDS").unwrap_or(DEFAULT_SECONDS));
    let rng_seed = std::env::var("RAP_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(rng_seed);
    let start = Instant::now();
    let mut report = Report {
        execs: 0,
        elapsed: Duration::ZERO,
        slowest: Duration::ZERO,
    };
    let run_one = |input: &[u8], report: &mut Report| {
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| target(input)));
        report.slowest = report.slowest.max(t.elapsed());
        report.execs += 1;
        if let Err(payload) = result {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let saved = save_finding(name, input);
            panic!(
                "fuzz target {name} panicked ({message}) on an input of {} bytes, saved as {} \
                 (random seed {rng_seed})",
                input.len(),
                saved.display()
            );
        }
    };
    for seed in seeds {
        run_one(seed, &mut report);
    }
    let mut previous: Option<Vec<u8>> = None;
    let mut entropy = vec![0u8; 512];
    while start.elapsed() < budget {
        // Mostly a fresh seed; sometimes keep walking from the last mutant.
        let mut input = match previous.take() {
            Some(p) if rng.random_ratio(1, 4) => p,
            _ => seeds[rng.random_range(0..seeds.len())].clone(),
        };
        rng.fill_bytes(&mut entropy);
        let mut u = Unstructured::new(&entropy);
        let count = u.int_in_range(1..=8u8).unwrap_or(1);
        for _ in 0..count {
            match Mutation::arbitrary(&mut u) {
                Ok(m) => apply(m, &mut input, seeds),
                Err(_) => break,
            }
        }
        run_one(&input, &mut report);
        previous = Some(input);
    }
    report.elapsed = start.elapsed();
    eprintln!(
        "fuzz {name}: {} execs in {:.1} s ({} seeds, random seed {rng_seed}), slowest input {} ms",
        report.execs,
        report.elapsed.as_secs_f64(),
        seeds.len(),
        report.slowest.as_millis()
    );
    report
}

fn save_finding(name: &str, input: &[u8]) -> PathBuf {
    let dir = std::env::var_os("RAP_FUZZ_FINDINGS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("rap-fuzz-findings"))
        .join(name);
    let path = dir.join(hex::encode(&Sha256::digest(input)[..8]));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        eprintln!("could not save the finding to {}: {e}", path.display());
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_in_bounds_and_change_inputs() {
        let seeds = vec![b"{\"a\": [1, 2, 3]}".to_vec(), vec![], vec![0u8; 3]];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut changed = 0;
        for i in 0..2000 {
            let mut input = seeds[i % seeds.len()].clone();
            let mut entropy = vec![0u8; 64];
            rng.fill_bytes(&mut entropy);
            let mut u = Unstructured::new(&entropy);
            if let Ok(m) = Mutation::arbitrary(&mut u) {
                apply(m, &mut input, &seeds);
            }
            assert!(input.len() <= MAX_INPUT);
            changed += usize::from(input != seeds[i % seeds.len()]);
        }
        assert!(
            changed > 1000,
            "only {changed} of 2000 mutations changed the input"
        );
    }

    #[test]
    fn a_panicking_target_fails_and_its_input_is_saved() {
        let dir = std::env::temp_dir().join(format!("rap-fuzz-self-test-{}", std::process::id()));
        std::env::set_var("RAP_FUZZ_FINDINGS", &dir);
        let seeds = vec![b"ok".to_vec()];
        let result = catch_unwind(|| {
            fuzz("self_test", &seeds, |input| {
                assert!(input.len() < 3, "too long");
            })
        });
        let message = *result.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("too long"), "{message}");
        let saved: Vec<_> = std::fs::read_dir(dir.join("self_test")).unwrap().collect();
        assert_eq!(saved.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
