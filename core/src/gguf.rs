//! Reading GGUF model files (the agent's LLM ships as one).

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::{Content, Value};

/// What a GGUF file says about itself: enough to prove it parsed and to show
/// the user which model is loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufSummary {
    pub architecture: String,
    pub name: String,
    pub tensors: usize,
    pub blocks: Option<u32>,
}

impl GgufSummary {
    pub fn read<R: Read + Seek>(reader: &mut R) -> candle_core::Result<Self> {
        let content = Content::read(reader)?;
        let text = |key: &str| content.metadata.get(key).and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        let architecture = text("general.architecture");
        let blocks = content.metadata.get(&format!("{architecture}.block_count")).and_then(|v| match v {
            Value::U32(n) => Some(*n),
            other => other.to_u64().ok().map(|n| n as u32),
        });
        Ok(Self { name: text("general.name"), architecture, tensors: content.tensor_infos.len(), blocks })
    }
}

impl std::fmt::Display for GgufSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.name.is_empty() { "unnamed model" } else { &self.name };
        write!(f, "{name} ({}", self.architecture)?;
        if let Some(blocks) = self.blocks {
            write!(f, ", {blocks} blocks")?;
        }
        write!(f, ", {} tensors)", self.tensors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use std::io::Cursor;

    #[test]
    fn summary_reads_metadata_and_tensor_count_of_a_written_file() {
        let dev = Device::Cpu;
        let weights = Tensor::arange(0f32, 64f32, &dev).unwrap().reshape((2, 32)).unwrap();
        let q = QTensor::quantize(&weights, GgmlDType::Q8_0).unwrap();
        let metadata = [
            ("general.architecture", Value::String("llama".into())),
            ("general.name", Value::String("tiny test model".into())),
            ("llama.block_count", Value::U32(2)),
        ];
        let mut file = Cursor::new(Vec::new());
        gguf_file::write(&mut file, &metadata.iter().map(|(k, v)| (*k, v)).collect::<Vec<_>>(), &[("blk.0.w", &q)]).unwrap();
        file.set_position(0);
        let summary = GgufSummary::read(&mut file).unwrap();
        assert_eq!(summary, GgufSummary { architecture: "llama".into(), name: "tiny test model".into(), tensors: 1, blocks: Some(2) });
        assert_eq!(summary.to_string(), "tiny test model (llama, 2 blocks, 1 tensors)");
    }

    #[test]
    fn summary_rejects_a_file_that_is_not_gguf() {
        assert!(GgufSummary::read(&mut Cursor::new(b"not a model at all".to_vec())).is_err());
    }
}
