//! The agent's LLM: SmolLM2-135M-Instruct from its GGUF file, with the
//! tokenizer built from the same file.

pub mod tokenizer;
pub mod quantize;
mod frozen_linear;
pub mod q8_matmul;
pub mod model;
pub mod generate;
