//! `sepsis`: the native command-line tool for SepsisAgent Web: model-file
//! checks now; data, training and evaluation commands join as they land.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use sepsis_core::manifest::{Manifest, Verifier};

#[derive(Parser)]
#[command(name = "sepsis", version, about = "SepsisAgent Web: research decision support for sepsis treatment (not a medical device)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Model manifest tools.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Verify that every file listed in the manifest exists in DIR with the
    /// listed size and SHA-256.
    Check {
        /// The manifest to check against.
        #[arg(long, default_value = "public/models/manifest.json")]
        manifest: PathBuf,
        /// Folder holding the model files.
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Manifest { command: ManifestCommand::Check { manifest, dir } } => check_manifest(&manifest, &dir),
    }
}

fn check_manifest(manifest_path: &PathBuf, dir: &PathBuf) -> Result<()> {
    let text = std::fs::read_to_string(manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = Manifest::from_json(&text).with_context(|| format!("in {}", manifest_path.display()))?;
    let mut failures = 0;
    for file in &manifest.files {
        let path = dir.join(&file.name);
        let result = std::fs::File::open(&path)
            .with_context(|| format!("opening {}", path.display()))
            .and_then(|mut reader| {
                let mut verifier = Verifier::new(file);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = std::io::Read::read(&mut reader, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    verifier.update(&buf[..n]);
                }
                Ok(verifier.finish()?)
            });
        match result {
            Ok(()) => println!("ok      {} ({} bytes)", file.name, file.bytes),
            Err(e) => {
                failures += 1;
                println!("FAILED  {}: {e:#}", file.name);
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {} model files failed verification", manifest.files.len());
    }
    Ok(())
}
