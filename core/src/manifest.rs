//! The model manifest (`public/models/manifest.json`): which model files the
//! app needs, how large they are and their SHA-256. Every consumer (the
//! worker's model store, the set-up, the CLI) verifies through this module, so
//! a file that does not match is never used.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Path of the manifest relative to the served site root.
pub const MANIFEST_PATH: &str = "models/manifest.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this file; bump when fields change meaning.
    pub version: u32,
    pub files: Vec<ModelFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// File name, served at `models/<name>`.
    pub name: String,
    /// What the file is for (`llm-base`, `world-model`, `lora-adapter`, ...).
    pub role: String,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
    pub license: String,
    /// Where the file comes from, for provenance (registry package or command).
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for the expected format: {0}")]
    Parse(String),
    #[error("manifest version {found} is not supported (expected {expected})")]
    Version { found: u32, expected: u32 },
    #[error("manifest entry {name:?}: {problem}")]
    Entry { name: String, problem: String },
}

#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum VerifyError {
    #[error("{name}: expected {expected} bytes, got {actual}")]
    Size { name: String, expected: u64, actual: u64 },
    #[error("{name}: SHA-256 mismatch (expected {expected}, got {actual}); the file was discarded")]
    Digest { name: String, expected: String, actual: String },
}

pub const MANIFEST_VERSION: u32 = 1;

impl Manifest {
    /// Parse and sanity-check a manifest (version, unique names, well-formed digests).
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest =
            serde_json::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(ManifestError::Version { found: manifest.version, expected: MANIFEST_VERSION });
        }
        let mut seen = std::collections::HashSet::new();
        for file in &manifest.files {
            let problem = if !seen.insert(file.name.as_str()) {
                Some("listed twice".to_string())
            } else if file.name.contains('/') || file.name.contains("..") || file.name.is_empty() {
                Some("name must be a plain file name".to_string())
            } else if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                Some(format!("sha256 {:?} is not 64 lower-case hex digits", file.sha256))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ManifestError::Entry { name: file.name.clone(), problem });
            }
        }
        Ok(manifest)
    }

    pub fn file(&self, name: &str) -> Option<&ModelFile> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// Incremental SHA-256 and size check for one manifest entry, so a download can
/// be hashed chunk by chunk as it arrives instead of after it is buffered.
pub struct Verifier<'a> {
    file: &'a ModelFile,
    hasher: Sha256,
    bytes: u64,
}

impl<'a> Verifier<'a> {
    pub fn new(file: &'a ModelFile) -> Self {
        Self { file, hasher: Sha256::new(), bytes: 0 }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
    }

    pub fn bytes_seen(&self) -> u64 {
        self.bytes
    }

    /// Size is checked before the digest: a short read names itself clearly.
    pub fn finish(self) -> Result<(), VerifyError> {
        if self.bytes != self.file.bytes {
            return Err(VerifyError::Size { name: self.file.name.clone(), expected: self.file.bytes, actual: self.bytes });
        }
        let actual = hex::encode(self.hasher.finalize());
        if actual != self.file.sha256 {
            return Err(VerifyError::Digest { name: self.file.name.clone(), expected: self.file.sha256.clone(), actual });
        }
        Ok(())
    }
}

impl ModelFile {
    /// Verify a complete file held in memory.
    pub fn verify(&self, data: &[u8]) -> Result<(), VerifyError> {
        let mut verifier = Verifier::new(self);
        verifier.update(data);
        verifier.finish()
    }
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(data: &[u8]) -> ModelFile {
        ModelFile {
            name: "tiny.bin".into(),
            role: "test".into(),
            bytes: data.len() as u64,
            sha256: sha256_hex(data),
            license: "MIT".into(),
            source: "made in test".into(),
        }
    }

    #[test]
    fn sha256_matches_the_published_test_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn verify_accepts_the_exact_file() {
        let data = b"model weights".to_vec();
        assert_eq!(entry(&data).verify(&data), Ok(()));
    }

    #[test]
    fn verify_rejects_a_single_flipped_byte() {
        let data = b"model weights".to_vec();
        let file = entry(&data);
        let mut tampered = data.clone();
        tampered[3] ^= 1;
        assert!(matches!(file.verify(&tampered), Err(VerifyError::Digest { .. })));
    }

    #[test]
    fn verify_rejects_a_truncated_file_by_size() {
        let data = b"model weights".to_vec();
        let err = entry(&data).verify(&data[..5]).unwrap_err();
        assert_eq!(err, VerifyError::Size { name: "tiny.bin".into(), expected: 13, actual: 5 });
    }

    #[test]
    fn incremental_verification_equals_whole_file_verification() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let file = entry(&data);
        let mut verifier = Verifier::new(&file);
        for chunk in data.chunks(777) {
            verifier.update(chunk);
        }
        assert_eq!(verifier.bytes_seen(), 10_000);
        assert_eq!(verifier.finish(), Ok(()));
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let manifest = Manifest { version: 1, files: vec![entry(b"x")] };
        let text = serde_json::to_string(&manifest).unwrap();
        assert_eq!(Manifest::from_json(&text).unwrap(), manifest);
    }

    #[test]
    fn manifest_rejects_bad_digests_paths_duplicates_and_versions() {
        let good = entry(b"x");
        let mut upper = good.clone();
        upper.sha256 = upper.sha256.to_uppercase();
        let mut path = good.clone();
        path.name = "../etc/passwd".into();
        for files in [vec![upper], vec![path], vec![good.clone(), good.clone()]] {
            let text = serde_json::to_string(&Manifest { version: 1, files }).unwrap();
            assert!(matches!(Manifest::from_json(&text), Err(ManifestError::Entry { .. })), "{text}");
        }
        let text = serde_json::to_string(&Manifest { version: 2, files: vec![good] }).unwrap();
        assert_eq!(Manifest::from_json(&text), Err(ManifestError::Version { found: 2, expected: 1 }));
        assert!(matches!(Manifest::from_json("{"), Err(ManifestError::Parse(_))));
    }

    #[test]
    fn shipped_manifest_is_valid() {
        let text = include_str!("../../public/models/manifest.json");
        let manifest = Manifest::from_json(text).unwrap();
        assert!(manifest.files.iter().any(|f| f.role == "llm-base"));
    }
}
