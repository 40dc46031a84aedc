//! Neutralising template markers in user text (concept names and info, questions, turns).
//!
//! A prompt string mixes our structure (role markers, separators, `<image>` placeholders) with
//! text users wrote. If a concept's info said `</s>USER: ...`, a LLaVA prompt would seem to end
//! the turn and start a new one. [`neutralize`] breaks every known marker by inserting a
//! ZERO WIDTH SPACE (U+200B) inside it: `</s>` becomes `<\u{200B}/s>`, `USER:` becomes
//! `USER\u{200B}:`, `<|im_start|>` becomes `<\u{200B}|im_start|>`, `###` becomes `#\u{200B}##`.
//! The text still reads the same to a person, but neither a tokenizer's special-token matcher
//! nor a model sees the marker. Ordinary angle-bracket names such as `<bo>` are left alone
//! (they are how RAP writes concept names).
//!
//! Markers covered (case-sensitive, as the templates write them):
//! - any `<|` (ChatML, Phi-3, Llama 3: `<|im_start|>`, `<|end|>`, `<|eot_id|>`...);
//! - `<image>`, `<s>`, `</s>`, `<bos>`, `<eos>`, `<start_of_turn>`, `<end_of_turn>`;
//! - `[INST]`, `[/INST]`;
//! - `USER:`, `ASSISTANT:`, `SYSTEM:`, `Human:`, `Assistant:`;
//! - `###` (the `llava_v0` separator).
//!
//! The function is idempotent: neutralised text has no marker left to break.

/// The character inserted into markers.
pub const ZWSP: char = '\u{200B}';

/// (marker, byte offset at which ZWSP is inserted)
const MARKERS: &[(&str, usize)] = &[
    ("<|", 1),
    ("<image>", 1),
    ("</s>", 1),
    ("<s>", 1),
    ("<bos>", 1),
    ("<eos>", 1),
    ("<start_of_turn>", 1),
    ("<end_of_turn>", 1),
    ("[INST]", 1),
    ("[/INST]", 1),
    ("USER:", 4),
    ("ASSISTANT:", 9),
    ("SYSTEM:", 6),
    ("Human:", 5),
    ("Assistant:", 9),
    ("###", 1),
];

/// Breaks every template marker in `text` with a zero-width space (see the module docs).
pub fn neutralize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < text.len() {
        let rest = &text[i..];
        for (marker, offset) in MARKERS {
            if rest.starts_with(marker) {
                out.push_str(&marker[..*offset]);
                out.push(ZWSP);
                i += offset;
                continue 'scan;
            }
        }
        // Advance by one whole character.
        let ch = rest.chars().next().unwrap_or(ZWSP);
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// Whether `text` holds a marker that [`neutralize`] would break.
pub fn has_marker(text: &str) -> bool {
    MARKERS.iter().any(|(m, _)| text.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaks_markers_and_keeps_names() {
        let s = neutralize("<bo> likes </s>USER: hi ASSISTANT: <|im_end|><image>### x");
        assert_eq!(
            s,
            "<bo> likes <\u{200B}/s>USER\u{200B}: hi ASSISTANT\u{200B}: <\u{200B}|im_end|><\u{200B}image>#\u{200B}## x"
        );
        assert!(!has_marker(&s));
    }

    #[test]
    fn idempotent_and_plain_text_unchanged() {
        for t in [
            "####",
            "<<|end|>",
            "Human: Assistant: SYSTEM: [INST] [/INST] <s> <bos><eos>",
            "<start_of_turn>user",
            "é<image>ü",
        ] {
            let once = neutralize(t);
            assert!(!has_marker(&once), "{t:?} -> {once:?}");
            assert_eq!(neutralize(&once), once);
            assert_eq!(once.replace(ZWSP, ""), t);
        }
        let plain = "<bo> is a Shiba Inu, user: fine. 2 # 3";
        assert_eq!(neutralize(plain), plain);
    }
}
