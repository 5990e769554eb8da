//! `host download`: MNIST, Fashion-MNIST or KMNIST from the public mirrors, SHA-256 checked.

use std::path::PathBuf;

use anyhow::Result;

use super::args::DownloadArgs;

/// Runs `host download`.
pub fn run(a: DownloadArgs) -> Result<()> {
    let set = a.dataset;
    let mirrors: Vec<&str> = if a.mirrors.is_empty() {
        set.mirrors.to_vec()
    } else {
        a.mirrors.iter().map(String::as_str).collect()
    };
    let dir = a.dir.unwrap_or_else(|| PathBuf::from(set.default_dir));
    set.download(&dir, &mirrors, true)?;
    outln!("{} is in {}", set.title, dir.display());
    Ok(())
}
