//! [`LlavaGenerator`]: a local vision-language model of the LLaVA-1.5 family (the architecture
//! of both RAP checkpoints: CLIP ViT-L/14-336 tower, features of its penultimate layer without
//! CLS, `mlp2x_gelu` projector, 576 tokens per 336 px image; a Llama / Vicuna language model for
//! RAP-LLaVA-13b, a Phi-3-mini one for RAP-Phi3-mini, chosen from the config ([`LmFamily`])).
//!
//! A folder in either layout loads: llava-hf (`LlavaForConditionalGeneration`: config.json with
//! text_config / vision_config, model.safetensors or shards, tokenizer.json,
//! preprocessor_config.json) or the original LLaVA one (`LlavaLlamaForCausalLM` /
//! `LlavaPhiForCausalLM`: `model.mm_projector.*`, the CLIP tower in the checkpoint or as the
//! folder `mm_vision_tower` names). PEFT LoRA adapters are merged into the weights at load time
//! ([`weights`]). [`LlavaOptions::quantize`] stores the language model's linear weights as Q8_0
//! or Q4K while loading ([`lm`]), so RAP-Phi3-mini runs in a few GB on a CPU. Phi-3 stops at
//! `<|end|>` as well as the configured EOS ids.
//!
//! A conversation is rendered by the caller's renderer (the chat template, e.g. vicuna_v1) with
//! each image part as `<image>`; as the original LLaVA's `tokenizer_image_token` does, the
//! prompt is cut at each `<image>`, each piece tokenized on its own (BOS only on the first), and
//! each `<image>` replaced by that image's features, images in the order the parts carry them
//! (RAP's: the query image, then each concept's reference image). Images are padded to a square
//! with the mean colour and run through the CLIP processor ([`preprocess`]).
//!
//! Correctness is pinned against transformers on tiny random models (Llama and Phi-3) in both
//! layouts and with a LoRA adapter (`tests/llm_local/llava_golden.rs`, `llava_phi3_golden.rs`;
//! fixtures from `tools/golden/llava_tiny_golden.py`, `llava_phi3_tiny_golden.py`).

pub mod bench;
pub mod config;
pub mod lm;
pub mod model;
pub mod preprocess;
pub mod weights;

pub use config::{Layout, LlavaConfig, LmFamily, Projector, RopeScaling, TextConfig, VisionConfig};
pub use lm::{QuantStats, Quantize};
pub use model::LlavaModel;
pub use preprocess::ImagePreprocess;
pub use weights::Checkpoint;

use crate::generator::{PromptRenderer, StopScanner, TokenGeneration};
use crate::llava::config::read_json;
use crate::llava::lm::LmCache;
use crate::sampling::Sampler;
use candle_core::{DType, Device, Tensor};
use rap_core::{
    Error, FinishReason, Generation, GenerationParams, Generator, GeneratorInfo, ImageData,
    Message, Result,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::Tokenizer;

/// The placeholder the renderer writes for each image.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

/// Receives each generation step's logits (vocabulary-sized).
pub type StepLogits<'a> = &'a mut dyn FnMut(&[f32]);

/// Prompt embeddings fed to the model in one forward pass.
pub(crate) const PREFILL_CHUNK: usize = 512;

/// How to load a LLaVA folder.
#[derive(Debug, Clone, Default)]
pub struct LlavaOptions {
    /// Where the model runs; `None`: the CPU.
    pub device: Option<Device>,
    /// Weight dtype; default f32 on the CPU and f16 on a GPU.
    pub dtype: Option<DType>,
    /// PEFT LoRA adapter folders merged into the weights, in order.
    pub lora: Vec<PathBuf>,
    /// The CLIP tower's folder, for an original-layout checkpoint without the tower's weights
    /// (default: the folder `mm_vision_tower` names, as a path or inside the model folder).
    pub vision_tower: Option<PathBuf>,
    /// Largest accepted image.
    pub image_limits: rap_image::Limits,
    /// The language model's linear weights, quantized while loading (the vision tower and
    /// projector stay in `dtype`).
    pub quantize: Quantize,
}

/// A tokenized prompt: text pieces around the images, and the images in order.
#[derive(Debug, Clone)]
pub struct PromptInput {
    /// `images.len() + 1` token pieces.
    pub chunks: Vec<Vec<u32>>,
    pub images: Vec<ImageData>,
}

/// A local LLaVA-1.5 generator.
pub struct LlavaGenerator {
    info: GeneratorInfo,
    config: LlavaConfig,
    model: LlavaModel,
    tokenizer: Tokenizer,
    bos: Option<u32>,
    eos: Vec<u32>,
    preprocess: ImagePreprocess,
    render: PromptRenderer,
    limits: rap_image::Limits,
}

impl std::fmt::Debug for LlavaGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlavaGenerator")
            .field("info", &self.info)
            .field("layout", &self.config.layout)
            .field("preprocess", &self.preprocess)
            .finish_non_exhaustive()
    }
}

/// Whether `dir` looks like a LLaVA checkpoint (its config.json is one of the two layouts).
pub fn is_llava_dir(dir: &Path) -> bool {
    LlavaConfig::from_dir(dir).is_ok()
}

/// Checks a LLaVA folder without loading its weights: the config, the tokenizer file, and the
/// language model's tensor names and shapes in the safetensors headers (what `rap models add`
/// and `install` check; a full load would read gigabytes).
pub fn check_dir(dir: &Path) -> Result<LlavaConfig> {
    let config = LlavaConfig::from_dir(dir)?;
    if !dir.join("tokenizer.json").is_file() {
        return Err(Error::Model(format!(
            "{}: no tokenizer.json",
            dir.display()
        )));
    }
    let ck = Checkpoint::open(dir)?;
    let (lm, head, _) = model::detect_names(&ck, &config)?;
    model::check_lm(&ck, &lm, &head, &config.text)?;
    Ok(config)
}

fn has_config(p: &Path) -> bool {
    p.join("config.json").is_file()
}

/// The CLIP tower's folder of an original-layout checkpoint, when there is one.
fn tower_dir(dir: &Path, config: &LlavaConfig, opts: &LlavaOptions) -> Result<Option<PathBuf>> {
    if let Some(p) = &opts.vision_tower {
        if !has_config(p) {
            return Err(Error::Model(format!(
                "{}: the vision tower folder has no config.json",
                p.display()
            )));
        }
        return Ok(Some(p.clone()));
    }
    let mut candidates = Vec::new();
    if let Some(name) = &config.mm_vision_tower {
        let p = Path::new(name);
        candidates.push(dir.join(p));
        if let Some(last) = p.file_name() {
            candidates.push(dir.join(last));
        }
    }
    candidates.push(dir.join("vision_tower"));
    Ok(candidates.into_iter().find(|p| has_config(p)))
}

impl LlavaGenerator {
    /// Loads the LLaVA checkpoint in `dir`; `render` renders a conversation to the prompt
    /// string, each image part as `<image>` (e.g. rap-llm's vicuna_v1 template).
    pub fn load(
        dir: impl AsRef<Path>,
        opts: &LlavaOptions,
        render: PromptRenderer,
    ) -> Result<Self> {
        let dir = dir.as_ref();
        let config = LlavaConfig::from_dir(dir)?;
        let mut main = Checkpoint::open(dir)?;
        for adapter in &opts.lora {
            main.add_lora(adapter)?;
        }
        let main = Arc::new(main);
        let tower_folder = match config.layout {
            Layout::Hf => None,
            Layout::Original => tower_dir(dir, &config, opts)?,
        };
        let (vision, tower, prefix) = match config.layout {
            Layout::Hf => {
                let prefix = model::detect_vision(&main).ok_or_else(|| {
                    Error::Model(format!(
                        "{}: no vision tower weights (`model.vision_tower.*` or `vision_tower.vision_model.*`)",
                        dir.display()
                    ))
                })?;
                let vision = config
                    .vision
                    .clone()
                    .ok_or_else(|| Error::Model(format!("{}: no vision_config", dir.display())))?;
                (vision, main.clone(), prefix)
            }
            Layout::Original => {
                let folder_config = match &tower_folder {
                    Some(t) => {
                        let f = t.join("config.json");
                        Some(VisionConfig::from_value(&read_json(&f)?, &f)?)
                    }
                    None => None,
                };
                if let Some(prefix) = model::detect_vision(&main) {
                    // The tower's weights are in the checkpoint (fine-tuned towers).
                    let vision = match folder_config {
                        Some(v) => v,
                        None if config
                            .mm_vision_tower
                            .as_deref()
                            .is_some_and(|n| n.ends_with("clip-vit-large-patch14-336")) =>
                        {
                            VisionConfig::clip_vit_large_patch14_336()
                        }
                        None => {
                            return Err(Error::Model(format!(
                                "{}: the vision tower `{}` has no config.json here; put its folder at {} or pass the folder",
                                dir.display(),
                                config.mm_vision_tower.as_deref().unwrap_or("?"),
                                dir.join("vision_tower").display()
                            )))
                        }
                    };
                    (vision, main.clone(), prefix)
                } else {
                    let Some(t) = &tower_folder else {
                        return Err(Error::Model(format!(
                            "{}: the checkpoint has no vision tower weights and its tower `{}` was not found \
                             (expected a CLIP folder with config.json and safetensors at {} or {})",
                            dir.display(),
                            config.mm_vision_tower.as_deref().unwrap_or("?"),
                            dir.join(
                                Path::new(config.mm_vision_tower.as_deref().unwrap_or("vision_tower"))
                                    .file_name()
                                    .unwrap_or_default()
                            )
                            .display(),
                            dir.join("vision_tower").display()
                        )));
                    };
                    let tck = Checkpoint::open(t)?;
                    let prefix = model::detect_vision(&tck).ok_or_else(|| {
                        Error::Model(format!(
                            "{}: no CLIP vision weights (`vision_model.embeddings.patch_embedding.weight`)",
                            t.display()
                        ))
                    })?;
                    let vision = folder_config
                        .ok_or_else(|| Error::Model(format!("{}: no config.json", t.display())))?;
                    (vision, Arc::new(tck), prefix)
                }
            }
        };

        let device = match &opts.device {
            Some(d) => d.clone(),
            None => Device::Cpu,
        };
        let dtype = match opts.dtype {
            Some(d) => d,
            None if device.is_cpu() => DType::F32,
            None => DType::F16,
        };
        let model = LlavaModel::load(
            &config,
            &vision,
            main,
            tower,
            &prefix,
            dtype,
            opts.quantize,
            &device,
        )?;

        let pre_file = [Some(dir.to_path_buf()), tower_folder.clone()]
            .into_iter()
            .flatten()
            .map(|d| d.join("preprocessor_config.json"))
            .find(|p| p.is_file());
        let preprocess = match pre_file {
            Some(f) => {
                ImagePreprocess::from_file(&f, vision.image_size as u32, config.pad_to_square)?
            }
            None => ImagePreprocess::clip(vision.image_size as u32, config.pad_to_square),
        };

        let tk_path = dir.join("tokenizer.json");
        if !tk_path.is_file() {
            return Err(Error::Model(format!(
                "{}: no tokenizer.json (a SentencePiece tokenizer.model alone is not read; \
                 transformers' AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR) writes one)",
                dir.display()
            )));
        }
        let tokenizer = Tokenizer::from_file(&tk_path)
            .map_err(|e| Error::Model(format!("{}: {e}", tk_path.display())))?;
        let mut eos = config.text.eos_token_ids.clone();
        let gen_cfg = dir.join("generation_config.json");
        if gen_cfg.is_file() {
            let v = read_json(&gen_cfg)?;
            let r = config::Reader {
                v: &v,
                file: &gen_cfg,
                prefix: "",
            };
            for id in r.ids("eos_token_id")? {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
        }
        if config.text.family == LmFamily::Phi3 {
            // Phi-3 ends a turn with `<|end|>` (its generation_config lists it; a LLaVA-Phi-3
            // config.json names only `<|endoftext|>`).
            for stop in ["<|end|>", "<|endoftext|>"] {
                if let Some(id) = tokenizer.token_to_id(stop) {
                    if !eos.contains(&id) {
                        eos.push(id);
                    }
                }
            }
        }
        let vocab = config.text.vocab_size as u32;
        if let Some(bad) = eos.iter().find(|e| **e >= vocab) {
            return Err(Error::Model(format!(
                "{}: eos_token_id {bad} is outside the vocabulary of {vocab}",
                dir.display()
            )));
        }
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "llava".to_owned());
        tracing::info!(
            path = %dir.display(),
            layout = ?config.layout,
            image_tokens = model.tokens_per_image(),
            lora = opts.lora.len(),
            lm = ?config.text.family,
            quantize = %opts.quantize,
            quantized = ?model.quant_stats(),
            "loaded LLaVA model"
        );
        Ok(LlavaGenerator {
            info: GeneratorInfo {
                model: name,
                accepts_images: true,
                context_length: Some(config.text.max_position_embeddings),
            },
            bos: config.text.bos_token_id,
            config,
            model,
            tokenizer,
            eos,
            preprocess,
            render,
            limits: opts.image_limits,
        })
    }

    /// Sets the model id answers carry (default: the folder's name).
    pub fn set_model_id(&mut self, id: impl Into<String>) {
        self.info.model = id.into();
    }

    /// The configuration read from the folder.
    pub fn config(&self) -> &LlavaConfig {
        &self.config
    }

    /// The token ids that end an answer (the config's EOS ids, and Phi-3's `<|end|>`).
    pub fn eos_tokens(&self) -> &[u32] {
        &self.eos
    }

    /// What quantization made of the language model's linear weights.
    pub fn quant_stats(&self) -> QuantStats {
        self.model.quant_stats()
    }

    /// The image preprocessing in use.
    pub fn preprocess(&self) -> &ImagePreprocess {
        &self.preprocess
    }

    /// Tokens each image becomes (576 for LLaVA-1.5 at 336 px).
    pub fn tokens_per_image(&self) -> usize {
        self.model.tokens_per_image()
    }

    /// Replaces the prompt renderer.
    pub fn set_renderer(&mut self, render: PromptRenderer) {
        self.render = render;
    }

    /// The prompt `messages` render to, images as `<image>`.
    pub fn render_prompt(&self, messages: &[Message]) -> Result<String> {
        (self.render)(messages)
    }

    /// Tokenizes a prompt with `<image>` placeholders as LLaVA's `tokenizer_image_token` does:
    /// one token piece per text piece, BOS only on the first.
    pub fn tokenize_prompt(&self, prompt: &str) -> Result<Vec<Vec<u32>>> {
        let vocab = self.config.text.vocab_size as u32;
        prompt
            .split(IMAGE_PLACEHOLDER)
            .enumerate()
            .map(|(i, piece)| {
                let enc = self
                    .tokenizer
                    .encode(piece, true)
                    .map_err(|e| Error::Model(format!("tokenizer: {e}")))?;
                let mut ids = enc.get_ids().to_vec();
                if i > 0 && self.bos.is_some() && ids.first().copied() == self.bos {
                    ids.remove(0);
                }
                if let Some(bad) = ids.iter().find(|t| **t >= vocab) {
                    return Err(Error::Model(format!(
                        "the tokenizer produced id {bad}, outside the model's vocabulary of {vocab}"
                    )));
                }
                Ok(ids)
            })
            .collect()
    }

    /// The model's input for a conversation: rendered, tokenized, its images in order. The
    /// number of `<image>` placeholders must equal the number of image parts.
    pub fn prompt_input(&self, messages: &[Message]) -> Result<PromptInput> {
        let prompt = self.render_prompt(messages)?;
        let images: Vec<ImageData> = messages.iter().flat_map(|m| m.images().cloned()).collect();
        let placeholders = prompt.matches(IMAGE_PLACEHOLDER).count();
        if placeholders != images.len() {
            return Err(Error::invalid(format!(
                "the prompt has {placeholders} `<image>` placeholder(s) but the conversation carries {} image(s)",
                images.len()
            )));
        }
        Ok(PromptInput {
            chunks: self.tokenize_prompt(&prompt)?,
            images,
        })
    }

    /// The tower's input for `images`: `[n, 3, S, S]` f32 on the model's device.
    pub fn pixel_values(&self, images: &[ImageData]) -> Result<Tensor> {
        let s = self.preprocess.image_size as usize;
        let mut data = Vec::with_capacity(images.len() * 3 * s * s);
        for (i, img) in images.iter().enumerate() {
            let rgb = rap_image::decode(&img.bytes, &self.limits)
                .map_err(|e| Error::invalid(format!("image {}: {e}", i + 1)))?;
            data.extend(self.preprocess.apply(&rgb)?);
        }
        Tensor::from_vec(data, (images.len(), 3, s, s), &self.model.device).map_err(model_err)
    }

    /// Tokens the conversation takes in the context, each image counted as its features.
    pub fn prompt_length(&self, messages: &[Message]) -> Result<usize> {
        Ok(self.sequence_length(&self.prompt_input(messages)?))
    }

    fn sequence_length(&self, input: &PromptInput) -> usize {
        input.chunks.iter().map(Vec::len).sum::<usize>()
            + input.images.len() * self.model.tokens_per_image()
    }

    /// Runs the prompt through the model; returns the logits after each position in `at`
    /// (sorted, each < the sequence length) and after the last one.
    fn prefill(
        &self,
        input: &PromptInput,
        cache: &mut LmCache,
        at: &[usize],
    ) -> Result<(Vec<Tensor>, Tensor, usize)> {
        let len = self.sequence_length(input);
        if len == 0 {
            return Err(Error::invalid("the prompt is empty"));
        }
        let features = if input.images.is_empty() {
            None
        } else {
            let pixels = self.pixel_values(&input.images)?;
            Some(self.model.encode_images(&pixels).map_err(model_err)?)
        };
        let embeds = self
            .model
            .embed(&input.chunks, features.as_ref())
            .map_err(model_err)?;
        let mut cuts: Vec<usize> = at.iter().map(|p| p + 1).collect();
        cuts.extend((1..=len / PREFILL_CHUNK).map(|i| i * PREFILL_CHUNK));
        cuts.push(len);
        cuts.sort_unstable();
        cuts.dedup();
        let mut pos = 0;
        let mut wanted = Vec::new();
        let mut last = None;
        for cut in cuts {
            if cut > len {
                return Err(Error::invalid(format!(
                    "position {} is past the prompt's {len} tokens",
                    cut - 1
                )));
            }
            let piece = embeds.narrow(1, pos, cut - pos).map_err(model_err)?;
            let logits = self.model.forward(&piece, pos, cache).map_err(model_err)?;
            pos = cut;
            if at.contains(&(cut - 1)) {
                wanted.push(logits.clone());
            }
            last = Some(logits);
        }
        Ok((wanted, last.expect("at least one cut"), len))
    }

    /// Diagnostic for comparing with a reference: the logits (vocabulary-sized) at each prompt
    /// position in `positions` (ascending).
    pub fn prompt_logits(
        &self,
        messages: &[Message],
        positions: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        if positions.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid("positions must be strictly ascending"));
        }
        let input = self.prompt_input(messages)?;
        self.check_context(&input)?;
        let mut cache = self.model.cache();
        let (wanted, _, _) = self.prefill(&input, &mut cache, positions)?;
        wanted
            .into_iter()
            .map(|t| {
                t.squeeze(0)
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(model_err)
            })
            .collect()
    }

    fn check_context(&self, input: &PromptInput) -> Result<usize> {
        let len = self.sequence_length(input);
        let ctx = self.config.text.max_position_embeddings;
        if len >= ctx {
            return Err(Error::invalid(format!(
                "the prompt is {len} tokens ({} image(s) of {} tokens each), but {} has a context of {ctx} tokens (prompt and answer together)",
                input.images.len(),
                self.model.tokens_per_image(),
                self.info.model
            )));
        }
        Ok(len)
    }

    /// Generates an answer; `on_text` streams it as in [`Generator::generate`]. When
    /// `on_step_logits` is given it receives each step's logits (for golden tests).
    pub fn generate_tokens(
        &self,
        messages: &[Message],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
        mut on_step_logits: Option<StepLogits<'_>>,
    ) -> Result<TokenGeneration> {
        let mut sampler = Sampler::new(params)?;
        let input = self.prompt_input(messages)?;
        let prompt_len = self.check_context(&input)?;
        let done = |text: String, reason, tokens: Vec<u32>| TokenGeneration {
            generation: Generation {
                text,
                finish_reason: reason,
                prompt_tokens: prompt_len,
                completion_tokens: tokens.len(),
            },
            tokens,
        };
        if params.max_tokens == 0 {
            return Ok(done(String::new(), FinishReason::Length, Vec::new()));
        }
        let ctx = self.config.text.max_position_embeddings;

        let mut cache = self.model.cache();
        let (_, mut logits, mut pos) = self.prefill(&input, &mut cache, &[])?;
        let mut tokens = Vec::new();
        let mut detok = Detokenizer::new(&self.tokenizer);
        let mut stops = StopScanner::new(&params.stop);
        let mut stopped = false;
        let reason = loop {
            let last = logits.squeeze(0).map_err(model_err)?;
            if let Some(f) = on_step_logits.as_mut() {
                f(&last.to_vec1::<f32>().map_err(model_err)?);
            }
            let next = sampler.sample(&last, &tokens).map_err(model_err)?;
            if self.eos.contains(&next) {
                break FinishReason::Stop;
            }
            tokens.push(next);
            let piece = detok.push(next)?;
            let (emit, hit) = stops.push(&piece);
            if !emit.is_empty() && !on_text(&emit) {
                break FinishReason::Cancelled;
            }
            if hit {
                stopped = true;
                break FinishReason::Stop;
            }
            if tokens.len() >= params.max_tokens || pos + 1 >= ctx {
                break FinishReason::Length;
            }
            let emb = self.model.embed(&[vec![next]], None).map_err(model_err)?;
            logits = self
                .model
                .forward(&emb, pos, &mut cache)
                .map_err(model_err)?;
            pos += 1;
        };
        if reason != FinishReason::Cancelled && !stopped {
            let tail = detok.finish()?;
            let (mut emit, _) = stops.push(&tail);
            emit.push_str(&stops.finish());
            if !emit.is_empty() && !on_text(&emit) {
                return Ok(done(stops.into_text(), FinishReason::Cancelled, tokens));
            }
        }
        Ok(done(stops.into_text(), reason, tokens))
    }
}

impl Generator for LlavaGenerator {
    fn info(&self) -> &GeneratorInfo {
        &self.info
    }

    fn generate(
        &self,
        messages: &[Message],
        params: &GenerationParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        Ok(self
            .generate_tokens(messages, params, on_text, None)?
            .generation)
    }
}

fn model_err(e: candle_core::Error) -> Error {
    Error::Model(format!("llava: {e}"))
}

/// Streams decoded text: the whole answer is re-decoded after each token (so that the
/// tokenizer's decoder sees every token in context) and the new suffix is shown once it does
/// not end inside a multi-byte character.
struct Detokenizer<'a> {
    tk: &'a Tokenizer,
    tokens: Vec<u32>,
    shown: String,
}

impl<'a> Detokenizer<'a> {
    fn new(tk: &'a Tokenizer) -> Self {
        Detokenizer {
            tk,
            tokens: Vec::new(),
            shown: String::new(),
        }
    }

    fn decode(&self) -> Result<String> {
        self.tk
            .decode(&self.tokens, true)
            .map_err(|e| Error::Model(format!("tokenizer: {e}")))
    }

    fn push(&mut self, token: u32) -> Result<String> {
        self.tokens.push(token);
        let text = self.decode()?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        self.take(text)
    }

    fn take(&mut self, text: String) -> Result<String> {
        match text.strip_prefix(self.shown.as_str()) {
            Some(new) if !new.is_empty() => {
                let new = new.to_string();
                self.shown = text;
                Ok(new)
            }
            _ => Ok(String::new()),
        }
    }

    fn finish(&mut self) -> Result<String> {
        let text = self.decode()?;
        self.take(text)
    }
}
