//! rap-llm-local's integration tests as one test binary (one module per area).

mod common;
mod llava_golden;
mod llava_phi3_golden;
mod smollm2;
mod spm_tokenizer;
