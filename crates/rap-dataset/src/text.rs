//! The words of the data set: the questions, the prompts a generator gets, and the fallbacks
//! written from the annotations when no generator is configured.
//!
//! Questions are fixed templates (the reference's own where it has one: recognition and
//! caption). Answers for recognition and grounding come from the annotations alone. Concept
//! info, captions, descriptions and QA are written by a [`Generator`] when one is given, from
//! the prompt templates below, and otherwise (or when the generator's text fails the checks)
//! by deterministic fallbacks built from names, categories and boxes.
//!
//! Prompt templates use `{placeholders}`: `{name}` (bare name), `{category}`, `{objects}` (the
//! scene's concepts, e.g. `<kira> (a dog, on the left of the image); <bemo> (a backpack)`).
//! A generator that takes images gets the prompt in the RAP layout (the scene, then each
//! concept's crop, name and info, then the instruction), so it sees what the trained model will
//! see; a text-only generator gets the concept list as text and writes from the annotations.
//!
//! Generated text is accepted only when it is not empty, holds no chat-template marker or
//! `<image>`, names no concept other than the scene's (so noise concepts, added afterwards, can
//! never leak into an answer), writes every name in its brackets (a bare name is how small
//! models slip into naming the wrong thing), names at least one concept where the task needs
//! it, and, for QA, asks about the concept it was asked for.

use crate::rng::Rng;
use rap_core::{GenerationParams, Generator, ImageData, Message, Part, Result, Role};

/// The recognition question (the reference's evaluation prompt).
pub const RECOGNITION_QUESTION: &str =
    "Is <{name}> in this image? Answer with a single word or phrase.";
/// The grounding question; the answer is `[x1, y1, x2, y2]`, normalised, two decimals.
pub const GROUNDING_QUESTION: &str =
    "Give the bounding box of <{name}> in the image as [x1, y1, x2, y2], normalised to the image size, with two decimals.";
/// The caption question (the reference's evaluation prompt).
pub const CAPTION_QUESTION: &str = "Give a caption of the image.";
/// The description question.
pub const DESCRIPTION_QUESTION: &str = "Describe the image in detail.";

/// Asks a generator for a concept's info from its crop.
pub const INFO_PROMPT: &str = "The image shows a {category} that we call <{name}>. Write one or two sentences describing how <{name}> looks, so that it can be recognised in other photos. Start with \"<{name}> is\". Use no other name.";
/// Asks a generator for a caption of a scene.
pub const CAPTION_PROMPT: &str = "Write a one-sentence caption of this photo. The photo shows: {objects}. Refer to each of them by its name in angle brackets. Write only the caption.";
/// Asks a generator for a detailed description of a scene.
pub const DESCRIPTION_PROMPT: &str = "Describe this photo in detail, in three to five sentences. The photo shows: {objects}. Refer to each of them by its name in angle brackets. Write only the description.";
/// Asks a generator for one question and answer about a concept in a scene.
pub const QA_PROMPT: &str = "Write one question that a user might ask about <{name}> in this photo, and its answer. The photo shows: {objects}. Refer to each of them by its name in angle brackets. Reply in exactly two lines:\nQuestion: ...\nAnswer: ...";

/// Fills `{key}` placeholders.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in values {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// A box as the reference writes it: `[0.12, 0.30, 0.56, 0.91]`.
pub fn format_box(b: [f64; 4]) -> String {
    format!("[{:.2}, {:.2}, {:.2}, {:.2}]", b[0], b[1], b[2], b[3])
}

/// A concept as it appears in one scene.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneObject {
    pub name: String,
    pub category: String,
    pub info: String,
    /// Normalised `[x1, y1, x2, y2]`, when the annotations give a box.
    pub bbox: Option<[f64; 4]>,
}

fn article(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// `a dog`, `an apple`.
pub fn with_article(category: &str) -> String {
    format!("{} {category}", article(category))
}

/// Where a box sits: `on the left of the image`, `in the top right of the image`...
pub fn position(b: [f64; 4]) -> String {
    let cx = (b[0] + b[2]) / 2.0;
    let cy = (b[1] + b[3]) / 2.0;
    let h = if cx < 1.0 / 3.0 {
        Some("left")
    } else if cx > 2.0 / 3.0 {
        Some("right")
    } else {
        None
    };
    let v = if cy < 1.0 / 3.0 {
        Some("top")
    } else if cy > 2.0 / 3.0 {
        Some("bottom")
    } else {
        None
    };
    match (v, h) {
        (None, None) => "in the centre of the image".into(),
        (None, Some(h)) => format!("on the {h} of the image"),
        (Some(v), None) => format!("at the {v} of the image"),
        (Some(v), Some(h)) => format!("in the {v} {h} of the image"),
    }
}

/// How much of the image a box covers, in words.
pub fn size_words(b: [f64; 4]) -> &'static str {
    let area = ((b[2] - b[0]) * (b[3] - b[1])).clamp(0.0, 1.0);
    if area < 0.1 {
        "a small part"
    } else if area < 0.4 {
        "a good part"
    } else if area < 0.8 {
        "most"
    } else {
        "nearly all"
    }
}

/// `<kira> (a dog, on the left of the image); <bemo> (a backpack)`.
pub fn objects_text(objects: &[SceneObject]) -> String {
    objects
        .iter()
        .map(|o| match o.bbox {
            Some(b) => format!(
                "<{}> ({}, {})",
                o.name,
                with_article(&o.category),
                position(b)
            ),
            None => format!("<{}> ({})", o.name, with_article(&o.category)),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The info of a concept when no generator writes one: `<kira> is a dog.`
pub fn fallback_info(name: &str, category: &str) -> String {
    format!("<{name}> is {}.", with_article(category))
}

fn list_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [a] => a.clone(),
        [a, b] if !a.contains(',') => format!("{a} and {b}"),
        [a, b] => format!("{a}, and {b}"),
        [rest @ .., last] => format!("{}, and {last}", rest.join(", ")),
    }
}

/// `A photo of <kira>, a dog, on the left, and <bemo>, a backpack, on the right.`
pub fn fallback_caption(objects: &[SceneObject]) -> String {
    let items: Vec<String> = objects
        .iter()
        .map(|o| {
            let mut s = format!("<{}>, {}", o.name, with_article(&o.category));
            if let (Some(b), true) = (o.bbox, objects.len() > 1) {
                s.push_str(", ");
                s.push_str(&position(b).replace(" of the image", ""));
            }
            s
        })
        .collect();
    format!("A photo of {}.", list_and(&items))
}

/// Each concept's info, then where it is and how much of the image it covers.
pub fn fallback_description(objects: &[SceneObject]) -> String {
    if objects.is_empty() {
        return "The image shows none of the concepts.".into();
    }
    let mut parts = vec![if objects.len() == 1 {
        format!("The image shows <{}>.", objects[0].name)
    } else {
        let names: Vec<String> = objects.iter().map(|o| format!("<{}>", o.name)).collect();
        format!("The image shows {}.", list_and(&names))
    }];
    for o in objects {
        parts.push(o.info.trim().to_string());
        match o.bbox {
            Some(b) => parts.push(format!(
                "<{}> is {}, covering {} of it.",
                o.name,
                position(b),
                size_words(b)
            )),
            None => parts.push(format!("<{}> is the subject of the photo.", o.name)),
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" ")
}

/// One question and answer about `objects[target]` from the annotations; `others` are
/// categories of concepts elsewhere in the data set, for "is it a ...?" questions.
pub fn fallback_qa(
    objects: &[SceneObject],
    target: usize,
    others: &[String],
    rng: &mut Rng,
) -> (String, String) {
    let o = &objects[target];
    let n = &o.name;
    let mut options: Vec<(String, String)> = vec![(
        format!("What kind of thing is <{n}>?"),
        format!("<{n}> is {}.", with_article(&o.category)),
    )];
    if let Some(b) = o.bbox {
        options.push((
            format!("Where is <{n}> in the image?"),
            format!("<{n}> is {}.", position(b)),
        ));
    }
    let other_categories: Vec<&String> = others.iter().filter(|c| **c != o.category).collect();
    if !other_categories.is_empty() {
        let c = other_categories[rng.below(other_categories.len())];
        options.push((
            format!("Is <{n}> {}?", with_article(c)),
            format!("No, <{n}> is {}.", with_article(&o.category)),
        ));
    }
    for (j, p) in objects.iter().enumerate() {
        if j == target {
            continue;
        }
        if let (Some(a), Some(b)) = (o.bbox, p.bbox) {
            let (ca, cb) = ((a[0] + a[2]) / 2.0, (b[0] + b[2]) / 2.0);
            if (ca - cb).abs() >= 0.05 {
                let (l, r) = if ca < cb { (n, &p.name) } else { (&p.name, n) };
                options.push((
                    format!("Which is further left, <{n}> or <{}>?", p.name),
                    format!("<{l}> is further left than <{r}>."),
                ));
            }
        }
    }
    options.swap_remove(rng.below(options.len()))
}

/// The `<name>`s a text mentions (anything in angle brackets but `<image>`).
pub fn mentioned_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        match after.find(['>', '<', '\n']) {
            Some(end) if after.as_bytes()[end] == b'>' => {
                let name = &after[..end];
                if !name.is_empty() && name != "image" {
                    out.push(name.to_string());
                }
                rest = &after[end + 1..];
            }
            Some(end) => rest = &after[end..],
            None => break,
        }
    }
    out
}

/// What became of the texts a generator was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TextCounts {
    /// Accepted generator texts.
    pub generated: usize,
    /// Generator texts refused by the checks (a fallback was used instead).
    pub rejected: usize,
    /// Texts written by the fallbacks.
    pub fallback: usize,
}

/// A generator with the parameters to call it with.
pub struct TextGenerator<'a> {
    pub generator: &'a dyn Generator,
    pub params: GenerationParams,
}

/// Writes info, captions, descriptions and QA: with the generator when there is one.
pub struct Writer<'a> {
    generator: Option<TextGenerator<'a>>,
    pub counts: TextCounts,
}

/// What a generator call is for, to check its answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Task {
    Info,
    Caption,
    Description,
    Qa,
}

impl<'a> Writer<'a> {
    pub fn new(generator: Option<TextGenerator<'a>>) -> Self {
        Writer {
            generator,
            counts: TextCounts::default(),
        }
    }

    pub fn has_generator(&self) -> bool {
        self.generator.is_some()
    }

    /// Whether the generator sees images.
    pub fn sees_images(&self) -> bool {
        self.generator
            .as_ref()
            .map(|g| g.generator.info().accepts_images)
            .unwrap_or(false)
    }

    fn ask(&mut self, parts: Vec<Part>, what: &str) -> Result<String> {
        let g = self
            .generator
            .as_ref()
            .expect("ask is only called with a generator");
        let messages = [Message {
            role: Role::User,
            parts,
        }];
        let out = g
            .generator
            .generate(&messages, &g.params, &mut |_| true)
            .map_err(|e| rap_core::Error::Model(format!("generator failed on {what}: {e}")))?;
        Ok(out.text)
    }

    /// Checks generated text: `allowed` are the names it may use, each always as `<name>`
    /// (a bare "Lefa" is how small models slip into naming the wrong thing).
    fn accept(text: &str, allowed: &[&str], task: Task) -> Option<String> {
        let t = text.trim().trim_matches('"').trim();
        if t.is_empty() || t.len() > 4000 || rap_llm::neutralize(t) != t {
            return None;
        }
        let names = mentioned_names(t);
        if names.iter().any(|n| !allowed.contains(&n.as_str())) {
            return None;
        }
        if allowed.iter().any(|n| names_bare(t, n)) {
            return None;
        }
        if matches!(task, Task::Info | Task::Caption | Task::Description) && names.is_empty() {
            return None;
        }
        Some(t.to_string())
    }

    fn outcome(&mut self, accepted: Option<String>, fallback: impl FnOnce() -> String) -> String {
        match accepted {
            Some(t) => {
                self.counts.generated += 1;
                t
            }
            None => {
                if self.generator.is_some() {
                    self.counts.rejected += 1;
                }
                self.counts.fallback += 1;
                fallback()
            }
        }
    }

    /// A concept's info. A text-only generator cannot see the crop, so the fallback is used.
    pub fn info(
        &mut self,
        name: &str,
        category: &str,
        crop: &ImageData,
        what: &str,
    ) -> Result<String> {
        let mut accepted = None;
        if self.sees_images() {
            let prompt = fill(INFO_PROMPT, &[("name", name), ("category", category)]);
            let text = self.ask(vec![Part::Image(crop.clone()), Part::Text(prompt)], what)?;
            accepted = Self::accept(&text, &[name], Task::Info);
        }
        Ok(self.outcome(accepted, || fallback_info(name, category)))
    }

    fn scene_parts(
        &self,
        scene: &ImageData,
        objects: &[SceneObject],
        crops: &[ImageData],
        instruction: &str,
    ) -> Vec<Part> {
        if self.sees_images() {
            let concepts: Vec<rap_llm::LayoutConcept> = objects
                .iter()
                .zip(crops)
                .map(|(o, c)| rap_llm::LayoutConcept::new(&o.name, &o.info, Some(c.clone())))
                .collect();
            rap_llm::first_turn(Some(scene), &concepts, instruction)
        } else {
            let concepts: Vec<rap_llm::LayoutConcept> = objects
                .iter()
                .map(|o| rap_llm::LayoutConcept::new(&o.name, &o.info, None))
                .collect();
            rap_llm::first_turn(None, &concepts, instruction)
        }
    }

    fn scene_text(
        &mut self,
        task: Task,
        template: &str,
        scene: &ImageData,
        objects: &[SceneObject],
        crops: &[ImageData],
        what: &str,
    ) -> Result<Option<String>> {
        if self.generator.is_none() {
            return Ok(None);
        }
        let prompt = fill(template, &[("objects", &objects_text(objects))]);
        let parts = self.scene_parts(scene, objects, crops, &prompt);
        let text = self.ask(parts, what)?;
        let allowed: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
        Ok(Self::accept(&text, &allowed, task))
    }

    pub fn caption(
        &mut self,
        scene: &ImageData,
        objects: &[SceneObject],
        crops: &[ImageData],
        what: &str,
    ) -> Result<String> {
        let got = self.scene_text(Task::Caption, CAPTION_PROMPT, scene, objects, crops, what)?;
        Ok(self.outcome(got, || fallback_caption(objects)))
    }

    pub fn description(
        &mut self,
        scene: &ImageData,
        objects: &[SceneObject],
        crops: &[ImageData],
        what: &str,
    ) -> Result<String> {
        let got = self.scene_text(
            Task::Description,
            DESCRIPTION_PROMPT,
            scene,
            objects,
            crops,
            what,
        )?;
        Ok(self.outcome(got, || fallback_description(objects)))
    }

    /// A question and its answer about `objects[target]`.
    #[allow(clippy::too_many_arguments)]
    pub fn qa(
        &mut self,
        scene: &ImageData,
        objects: &[SceneObject],
        crops: &[ImageData],
        target: usize,
        other_categories: &[String],
        rng: &mut Rng,
        what: &str,
    ) -> Result<(String, String)> {
        let mut accepted = None;
        if self.generator.is_some() {
            let template = QA_PROMPT.replace("{name}", &objects[target].name);
            let prompt = fill(&template, &[("objects", &objects_text(objects))]);
            let parts = self.scene_parts(scene, objects, crops, &prompt);
            let text = self.ask(parts, what)?;
            let allowed: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
            let target_tag = format!("<{}>", objects[target].name);
            accepted = parse_qa(&text).and_then(|(q, a)| {
                // The question must be about the concept it was asked for, by its name.
                if !q.contains(&target_tag) {
                    return None;
                }
                let q = Self::accept(&q, &allowed, Task::Qa)?;
                let a = Self::accept(&a, &allowed, Task::Qa)?;
                Some((q, a))
            });
        }
        match accepted {
            Some(qa) => {
                self.counts.generated += 1;
                Ok(qa)
            }
            None => {
                if self.generator.is_some() {
                    self.counts.rejected += 1;
                }
                self.counts.fallback += 1;
                Ok(fallback_qa(objects, target, other_categories, rng))
            }
        }
    }
}

/// Whether `text` uses `name` as a bare word (any case), outside `<name>`.
fn names_bare(text: &str, name: &str) -> bool {
    let text = text
        .to_lowercase()
        .replace(&format!("<{}>", name.to_lowercase()), " ");
    let name = name.to_lowercase();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(&name).any(|(i, m)| {
        let before = text[..i].chars().next_back();
        let after = text[i + m.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// `Question: ...\nAnswer: ...` -> (question, answer).
fn parse_qa(text: &str) -> Option<(String, String)> {
    let mut q = None;
    let mut a = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Question:") {
            q.get_or_insert_with(|| rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("Answer:") {
            a.get_or_insert_with(|| rest.trim().to_string());
        }
    }
    Some((q?, a?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, category: &str, bbox: Option<[f64; 4]>) -> SceneObject {
        SceneObject {
            name: name.into(),
            category: category.into(),
            info: fallback_info(name, category),
            bbox,
        }
    }

    #[test]
    fn boxes_have_two_decimals_like_the_reference() {
        assert_eq!(
            format_box([0.0, 0.125, 0.5, 1.0]),
            "[0.00, 0.12, 0.50, 1.00]"
        );
        assert_eq!(
            format_box([0.994, 0.995, 0.333333, 0.6666]),
            "[0.99, 0.99, 0.33, 0.67]"
        );
    }

    #[test]
    fn fallbacks_read_well() {
        let a = obj("kira", "dog", Some([0.0, 0.2, 0.4, 0.9]));
        let b = obj("emo", "apple", Some([0.6, 0.1, 0.95, 0.5]));
        assert_eq!(
            fallback_caption(std::slice::from_ref(&a)),
            "A photo of <kira>, a dog."
        );
        assert_eq!(
            fallback_caption(&[a.clone(), b.clone()]),
            "A photo of <kira>, a dog, on the left, and <emo>, an apple, in the top right."
        );
        assert_eq!(
            fallback_description(std::slice::from_ref(&a)),
            "The image shows <kira>. <kira> is a dog. <kira> is on the left of the image, covering a good part of it."
        );
        let none = obj("zu", "cup", None);
        assert!(fallback_description(&[none]).ends_with("<zu> is the subject of the photo."));
        assert_eq!(
            position([0.7, 0.0, 0.9, 0.2]),
            "in the top right of the image"
        );
    }

    #[test]
    fn names_in_text() {
        assert_eq!(
            mentioned_names("<image>\nIs <kira> near <emo>? a < b > c"),
            vec!["kira", "emo", " b "]
        );
        assert!(mentioned_names("x < y\n> z").is_empty());
    }

    /// Answers every prompt with the same text; text-only, like SmolLM2.
    struct Canned(rap_core::GeneratorInfo, &'static str);

    impl Generator for Canned {
        fn info(&self) -> &rap_core::GeneratorInfo {
            &self.0
        }
        fn generate(
            &self,
            _: &[Message],
            _: &GenerationParams,
            _: &mut dyn FnMut(&str) -> bool,
        ) -> Result<rap_core::Generation> {
            Ok(rap_core::Generation {
                text: self.1.to_string(),
                finish_reason: rap_core::FinishReason::Stop,
                prompt_tokens: 0,
                completion_tokens: 0,
            })
        }
    }

    /// What `Writer::qa` makes of a generator's reply about `<kira>` in a scene with `<emo>`.
    fn qa_from(reply: &'static str) -> ((String, String), TextCounts) {
        let g = Canned(
            rap_core::GeneratorInfo {
                model: "canned".into(),
                accepts_images: false,
                context_length: None,
            },
            reply,
        );
        let mut writer = Writer::new(Some(TextGenerator {
            generator: &g,
            params: GenerationParams::default(),
        }));
        let objects = [obj("kira", "dog", None), obj("emo", "apple", None)];
        let scene = ImageData {
            bytes: std::sync::Arc::new(vec![]),
            mime: "image/png".into(),
        };
        let qa = writer
            .qa(&scene, &objects, &[], 0, &[], &mut Rng::new(1), "test")
            .unwrap();
        (qa, writer.counts)
    }

    #[test]
    fn generated_qa_must_be_about_its_concept_by_name() {
        let (qa, counts) =
            qa_from("Question: What is <kira> holding?\nAnswer: <kira> holds <emo>.");
        assert_eq!(qa.0, "What is <kira> holding?");
        assert_eq!(qa.1, "<kira> holds <emo>.");
        assert_eq!((counts.generated, counts.rejected), (1, 0));
        // Seen from SmolLM2-135M: a question about no concept, answered with the wrong name,
        // bare; a question about the other concept; a bare name in the answer.
        for bad in [
            "Question: What is the name of the dog in the photo?\nAnswer: Emo",
            "Question: What colour is <emo>?\nAnswer: <emo> is red.",
            "Question: Where is <kira>?\nAnswer: Kira is on the left.",
        ] {
            let (qa, counts) = qa_from(bad);
            assert_eq!((counts.generated, counts.rejected), (0, 1), "{bad}");
            assert!(
                qa.0.contains("<kira>"),
                "the fallback is about <kira>: {qa:?}"
            );
        }
    }

    #[test]
    fn generated_text_is_checked() {
        let allowed = ["kira"];
        assert_eq!(
            Writer::accept(" \"<kira> sits.\" ", &allowed, Task::Caption).as_deref(),
            Some("<kira> sits.")
        );
        assert!(Writer::accept("<kira> and <bo> sit.", &allowed, Task::Caption).is_none());
        assert!(Writer::accept("A dog sits.", &allowed, Task::Caption).is_none());
        assert!(Writer::accept("<kira></s>USER: hi", &allowed, Task::Caption).is_none());
        assert!(Writer::accept("", &allowed, Task::Qa).is_none());
        // A name used bare, without its brackets, is refused (any case, whole words only).
        assert!(Writer::accept("<kira> sits. Kira is happy.", &allowed, Task::Caption).is_none());
        assert!(Writer::accept("Kira", &allowed, Task::Qa).is_none());
        assert!(Writer::accept("<kira> sits by kirana.", &allowed, Task::Caption).is_some());
        assert_eq!(
            parse_qa("Question: Is <kira> happy?\nAnswer: Yes.\n"),
            Some(("Is <kira> happy?".into(), "Yes.".into()))
        );
        assert_eq!(parse_qa("just text"), None);
    }
}
