//! The three-stage curriculum that teaches the agent's LLM (issue "The
//! three-stage curriculum"): examples tokenized as the agent reads and writes
//! them, the stage-2 teacher (the `wm-mpc` planner driving the real loop),
//! and LoRA training with checkpoints that resume.

pub mod dynamics;
pub mod example;
pub mod grpo;
pub mod lora_training;
pub mod reward;
pub mod teacher;
