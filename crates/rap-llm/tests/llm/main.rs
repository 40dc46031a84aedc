//! rap-llm's integration tests as one test binary (one module per area).

mod openai_protocol;
mod real_server;
mod templates_golden;
