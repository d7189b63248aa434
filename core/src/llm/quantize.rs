//! Re-quantizing the shipped GGUF once at set-up: its Q4_1 blocks have no
//! SIMD kernel in candle (77 tok/s native decode against 111 for Q8_0; 18
//! against 67 in the browser, toolchain.md), so `sepsis llm quantize`
//! rewrites them as Q8_0. Other tensors (the Q8_0 embeddings, f32 norms) are
//! copied as they are. The output is deterministic (tensors in file order,
//! metadata sorted by key), so the manifest can pin its SHA-256.

use std::io::{Read, Seek, Write};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result};

/// llama.cpp's `general.file_type` for "mostly Q8_0".
const FILE_TYPE_Q8_0: u32 = 7;

#[derive(Clone, Debug, PartialEq)]
pub struct Requantized {
    pub tensors: usize,
    pub converted: usize,
}

pub fn requantize<R: Read + Seek, W: Write + Seek>(reader: &mut R, writer: &mut W, from: GgmlDType, to: GgmlDType) -> Result<Requantized> {
    let content = Content::read(reader)?;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort_by_key(|name| content.tensor_infos[*name].offset);
    let mut tensors: Vec<(&str, QTensor)> = Vec::with_capacity(names.len());
    let mut converted = 0;
    for name in names {
        let tensor = content.tensor(reader, name, &Device::Cpu)?;
        let tensor = if tensor.dtype() == from {
            converted += 1;
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, to)?
        } else {
            tensor
        };
        tensors.push((name, tensor));
    }
    let mut metadata: Vec<(&String, Value)> = content.metadata.iter().map(|(k, v)| (k, v.clone())).collect();
    metadata.sort_by(|a, b| a.0.cmp(b.0));
    if to == GgmlDType::Q8_0 {
        for (key, value) in metadata.iter_mut() {
            if key.as_str() == "general.file_type" {
                *value = Value::U32(FILE_TYPE_Q8_0);
            }
        }
    }
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    gguf_file::write(writer, &metadata, &tensor_refs)?;
    Ok(Requantized { tensors: tensors.len(), converted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;
    use std::io::Cursor;

    #[test]
    fn q4_1_blocks_become_q8_0_and_keep_their_values() {
        let dev = Device::Cpu;
        let w = Tensor::arange(0f32, 256f32, &dev).unwrap().affine(0.01, -1.0).unwrap().reshape((4, 64)).unwrap();
        let q4 = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let norm = QTensor::quantize(&Tensor::ones(64, candle_core::DType::F32, &dev).unwrap(), GgmlDType::F32).unwrap();
        let arch = Value::String("llama".into());
        let mut input = Cursor::new(Vec::new());
        gguf_file::write(&mut input, &[("general.architecture", &arch)], &[("blk.0.w", &q4), ("norm", &norm)]).unwrap();
        let run = |input: &Vec<u8>| {
            let mut out = Cursor::new(Vec::new());
            let report = requantize(&mut Cursor::new(input.clone()), &mut out, GgmlDType::Q4_1, GgmlDType::Q8_0).unwrap();
            (report, out.into_inner())
        };
        let (report, bytes) = run(input.get_ref());
        assert_eq!(report, Requantized { tensors: 2, converted: 1 });
        assert_eq!(bytes, run(input.get_ref()).1, "deterministic output");
        let mut reader = Cursor::new(bytes);
        let content = Content::read(&mut reader).unwrap();
        let q8 = content.tensor(&mut reader, "blk.0.w", &dev).unwrap();
        assert_eq!(q8.dtype(), GgmlDType::Q8_0);
        assert_eq!(content.tensor(&mut reader, "norm", &dev).unwrap().dtype(), GgmlDType::F32);
        // Q8_0 of the dequantized Q4_1 values is within Q8_0's step of them.
        let before = q4.dequantize(&dev).unwrap();
        let after = q8.dequantize(&dev).unwrap();
        let diff: f32 = (before - after).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(diff < 0.01, "max change {diff}");
    }
}
