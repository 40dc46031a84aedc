//! Fitting a prompt into a model's context: drop the lowest-scored retrieved concepts until the
//! prompt (plus room for the answer) fits, and say which were dropped so the caller can warn.

use rap_core::{Error, Result};

/// What [`fit_concepts`] decided.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fit {
    /// Indices (into the caller's concept list) that stay, in their original order.
    pub kept: Vec<usize>,
    /// Indices that were dropped, in the order they were dropped (lowest score first).
    pub dropped: Vec<usize>,
    /// Prompt tokens with the kept concepts.
    pub prompt_tokens: usize,
}

/// Keeps as many concepts as fit.
///
/// - `scores[i]` is concept `i`'s retrieval score (higher is better; ties drop the later one).
/// - `count_tokens(kept)` returns the prompt's token count when built with the concepts whose
///   indices are in `kept` (in order); it is where the caller lays out and tokenizes the prompt
///   (images count as the tokens the model gives them, e.g. 576 for LLaVA-1.5).
/// - `context_length` is the model's context; `reserve` tokens are kept free for the answer.
///
/// Fails when even the prompt with no concept does not fit, naming the sizes.
pub fn fit_concepts<F>(
    scores: &[f32],
    context_length: usize,
    reserve: usize,
    mut count_tokens: F,
) -> Result<Fit>
where
    F: FnMut(&[usize]) -> Result<usize>,
{
    let budget = context_length.saturating_sub(reserve);
    let mut kept: Vec<usize> = (0..scores.len()).collect();
    let mut dropped = Vec::new();
    loop {
        let tokens = count_tokens(&kept)?;
        if tokens <= budget {
            return Ok(Fit {
                kept,
                dropped,
                prompt_tokens: tokens,
            });
        }
        // The lowest score; among equals the later concept (it was ranked lower).
        let Some(pos) = kept
            .iter()
            .enumerate()
            .min_by(|(pa, a), (pb, b)| {
                scores[**a]
                    .partial_cmp(&scores[**b])
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(pb.cmp(pa))
            })
            .map(|(p, _)| p)
        else {
            return Err(Error::invalid(format!(
                "the prompt needs {tokens} tokens without any concept, more than the model's \
                 context of {context_length} tokens minus {reserve} kept for the answer; \
                 shorten the question or lower max tokens"
            )));
        };
        dropped.push(kept.remove(pos));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{first_turn, render_parts, LayoutConcept};

    #[test]
    fn drops_lowest_scored_first_and_keeps_order() {
        // Each concept costs 10 tokens, the question 5.
        let scores = [0.9, 0.5, 0.7, 0.5];
        let fit = fit_concepts(&scores, 40, 10, |k| Ok(5 + 10 * k.len())).unwrap();
        // Budget 30: 5+10n <= 30 -> n = 2. Drop 0.5 (index 3, the later tie), then 0.5 (index 1).
        assert_eq!(fit.dropped, vec![3, 1]);
        assert_eq!(fit.kept, vec![0, 2]);
        assert_eq!(fit.prompt_tokens, 25);
    }

    #[test]
    fn nothing_dropped_when_it_fits() {
        let fit = fit_concepts(&[0.1, 0.2], 100, 0, |k| Ok(k.len())).unwrap();
        assert!(fit.dropped.is_empty());
        assert_eq!(fit.kept, vec![0, 1]);
    }

    #[test]
    fn error_when_even_the_bare_prompt_is_too_long() {
        let e = fit_concepts(&[0.3], 10, 5, |_| Ok(8))
            .unwrap_err()
            .to_string();
        assert!(e.contains("8 tokens") && e.contains("10 tokens"), "{e}");
    }

    #[test]
    fn with_a_real_layout_and_word_count() {
        let concepts = [
            LayoutConcept::new(
                "bo",
                "a long description of a dog with many words in it",
                None,
            ),
            LayoutConcept::new("dug", "short", None),
        ];
        let scores = [0.4, 0.9];
        let count = |kept: &[usize]| {
            let cs: Vec<_> = kept.iter().map(|&i| concepts[i].clone()).collect();
            Ok(render_parts(&first_turn(None, &cs, "Who is it?"))
                .split_whitespace()
                .count())
        };
        let all = count(&[0, 1]).unwrap();
        let fit = fit_concepts(&scores, all - 1, 0, count).unwrap();
        assert_eq!(fit.dropped, vec![0]);
        assert_eq!(fit.kept, vec![1]);
    }
}
