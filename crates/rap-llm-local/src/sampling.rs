//! Choosing the next token: candle's sampler (greedy, temperature, top-p, seeded) after the
//! repetition penalty of [`GenerationParams::repetition_penalty`], shared by the GGUF and LLaVA
//! generators.

use candle_core::{DType, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use rap_core::{Error, GenerationParams, Result, REPEAT_WINDOW};

pub(crate) struct Sampler {
    processor: LogitsProcessor,
    penalty: f32,
}

impl Sampler {
    /// Checks `params`' sampling settings and builds the sampler (a random seed if none).
    pub(crate) fn new(params: &GenerationParams) -> Result<Self> {
        if !(params.temperature.is_finite() && params.temperature >= 0.0) {
            return Err(Error::invalid(format!(
                "temperature must be a finite number >= 0, got {}",
                params.temperature
            )));
        }
        if !(params.top_p > 0.0 && params.top_p <= 1.0) {
            return Err(Error::invalid(format!(
                "top_p must be in (0, 1], got {}",
                params.top_p
            )));
        }
        if !(params.repetition_penalty.is_finite() && params.repetition_penalty > 0.0) {
            return Err(Error::invalid(format!(
                "repetition_penalty must be a finite number > 0 (1 is none), got {}",
                params.repetition_penalty
            )));
        }
        let sampling = if params.temperature == 0.0 {
            Sampling::ArgMax
        } else if params.top_p < 1.0 {
            Sampling::TopP {
                p: params.top_p as f64,
                temperature: params.temperature as f64,
            }
        } else {
            Sampling::All {
                temperature: params.temperature as f64,
            }
        };
        let seed = params.seed.unwrap_or_else(rand::random);
        Ok(Sampler {
            processor: LogitsProcessor::from_sampling(seed, sampling),
            penalty: params.repetition_penalty,
        })
    }

    /// The next token from `logits` (one position, any float type), `generated` being the
    /// answer's tokens so far.
    pub(crate) fn sample(
        &mut self,
        logits: &Tensor,
        generated: &[u32],
    ) -> candle_core::Result<u32> {
        let logits = logits.to_dtype(DType::F32)?;
        if self.penalty == 1.0 || generated.is_empty() {
            return self.processor.sample(&logits);
        }
        let recent = &generated[generated.len().saturating_sub(REPEAT_WINDOW)..];
        let logits =
            candle_transformers::utils::apply_repeat_penalty(&logits, self.penalty, recent)?;
        self.processor.sample(&logits)
    }
}

#[cfg(test)]
mod tests {
    use super::Sampler;
    use candle_core::{Device, Tensor};
    use rap_core::{GenerationParams, REPEAT_WINDOW};

    fn greedy(penalty: f32) -> Sampler {
        Sampler::new(&GenerationParams {
            temperature: 0.0,
            repetition_penalty: penalty,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn penalty_turns_greedy_away_from_a_token_already_generated() {
        let logits = Tensor::new(&[1.0f32, 3.0, 2.8, -1.0], &Device::Cpu).unwrap();
        // Without a penalty, or before token 1 was generated, greedy takes token 1.
        assert_eq!(greedy(1.0).sample(&logits, &[1, 1]).unwrap(), 1);
        assert_eq!(greedy(1.3).sample(&logits, &[0, 3]).unwrap(), 1);
        // 3.0 / 1.3 = 2.31 < 2.8: token 2 now.
        assert_eq!(greedy(1.3).sample(&logits, &[1]).unwrap(), 2);
        // A small penalty is not enough (3.0 / 1.05 = 2.86 > 2.8).
        assert_eq!(greedy(1.05).sample(&logits, &[1]).unwrap(), 1);
        // Negative logits are multiplied, made more negative (-1.0 * 1.3 < -1.2), not divided
        // (which would raise -1.0 to -0.77).
        let neg = Tensor::new(&[-2.0f32, -1.0, -1.2], &Device::Cpu).unwrap();
        assert_eq!(greedy(1.3).sample(&neg, &[1]).unwrap(), 2);
    }

    #[test]
    fn penalty_only_looks_at_the_latest_window_of_the_answer() {
        let logits = Tensor::new(&[1.0f32, 3.0, 2.8], &Device::Cpu).unwrap();
        let mut old = vec![1u32];
        old.extend(std::iter::repeat_n(0u32, REPEAT_WINDOW));
        assert_eq!(greedy(1.3).sample(&logits, &old).unwrap(), 1);
        old.pop();
        assert_eq!(greedy(1.3).sample(&logits, &old).unwrap(), 2);
    }

    #[test]
    fn bad_settings_are_errors_that_name_them() {
        for (t, p, r, what) in [
            (-1.0, 1.0, 1.0, "temperature"),
            (f32::NAN, 1.0, 1.0, "temperature"),
            (0.5, 0.0, 1.0, "top_p"),
            (0.5, 1.0, 0.0, "repetition_penalty"),
            (0.5, 1.0, f32::INFINITY, "repetition_penalty"),
        ] {
            let params = GenerationParams {
                temperature: t,
                top_p: p,
                repetition_penalty: r,
                ..Default::default()
            };
            let err = Sampler::new(&params).err().expect("an error").to_string();
            assert!(err.contains(what), "{err}");
        }
    }
}
