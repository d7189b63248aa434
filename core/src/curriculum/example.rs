//! A training example: one decision's conversation tokenized exactly as the
//! agent reads and writes it at inference (the same segments, the call in
//! the pieces constrained decoding writes), with the tokens the model must
//! learn to write marked.

use serde::{Deserialize, Serialize};

use crate::agent::decision::{Conversation, Trace, TraceEvent};
use crate::agent::grammar::{call_pieces, parse};
use crate::llm::tokenizer::{answer_turn, system_turn, user_turn, ChatTokenizer};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub tokens: Vec<u32>,
    /// `target[i]`: token i is written by the model (loss is taken on it).
    pub target: Vec<bool>,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ExampleError {
    #[error("turn {turn}: {error}")]
    Call { turn: usize, error: crate::agent::grammar::ParseError },
    #[error("turn {turn}: the thought is {tokens} tokens; the agent thinks in at most {limit}")]
    LongThought { turn: usize, tokens: usize, limit: usize },
    #[error("the decision ended without a prescription ({0})")]
    NoPrescription(String),
}

impl Example {
    /// Tokens whose prediction is trained (the positions before targets).
    pub fn target_count(&self) -> usize {
        self.target.iter().filter(|t| **t).count()
    }

    fn read(&mut self, tokens: Vec<u32>, target: bool) {
        self.target.extend(std::iter::repeat_n(target, tokens.len()));
        self.tokens.extend(tokens);
    }

    /// A finished decision: every turn the proposer wrote (the prescribing
    /// one last) and the loop's answers between them.
    pub fn from_decision(
        tokenizer: &ChatTokenizer,
        system_prompt: &str,
        conversation: &Conversation,
        trace: &Trace,
        thought_limit: usize,
    ) -> Result<Self, ExampleError> {
        if let Some(reason) = &trace.fallback {
            return Err(ExampleError::NoPrescription(reason.clone()));
        }
        let mut turns: Vec<(String, Option<String>)> = conversation.turns.iter().map(|(t, a)| (t.clone(), Some(a.clone()))).collect();
        let last = trace.events.iter().rev().find_map(|e| match e {
            TraceEvent::Turn { text } => Some(text.clone()),
            _ => None,
        });
        turns.push((last.ok_or_else(|| ExampleError::NoPrescription("no turn".into()))?, None));
        Self::from_conversation(tokenizer, system_prompt, &trace.observation, &turns, thought_limit)
    }

    /// `turns`: each assistant turn and the loop's answer to it (`None` for
    /// the last, prescribing turn). A turn is a thought line, then one call.
    pub fn from_conversation(
        tokenizer: &ChatTokenizer,
        system_prompt: &str,
        observation: &str,
        turns: &[(String, Option<String>)],
        thought_limit: usize,
    ) -> Result<Self, ExampleError> {
        let mut example = Example { tokens: Vec::new(), target: Vec::new() };
        example.read(tokenizer.encode(&system_turn(system_prompt)), false);
        example.read(tokenizer.encode(&user_turn(observation)), false);
        for (turn, (text, answer)) in turns.iter().enumerate() {
            let call = parse(text).map_err(|error| ExampleError::Call { turn, error })?;
            let thought = &text[..text.find('<').unwrap_or(text.len())];
            let thought_tokens = tokenizer.encode(thought);
            if thought_tokens.len() > thought_limit {
                return Err(ExampleError::LongThought { turn, tokens: thought_tokens.len(), limit: thought_limit });
            }
            example.read(thought_tokens, true);
            if !thought.trim().is_empty() && !thought.ends_with('\n') {
                // The constrained decoder adds this newline itself.
                example.read(tokenizer.encode("\n"), false);
            }
            for piece in call_pieces(&call) {
                example.read(tokenizer.encode(&piece), true);
            }
            if let Some(answer) = answer {
                example.read(tokenizer.encode(&answer_turn(answer)), false);
            }
        }
        Ok(example)
    }
}
