//! `host download`: MNIST from the public mirrors, SHA-256 checked.

use anyhow::Result;

use super::args::DownloadArgs;

/// Runs `host download`.
pub fn run(a: DownloadArgs) -> Result<()> {
    let mirrors: Vec<&str> = if a.mirrors.is_empty() {
        data::download::MNIST_MIRRORS.to_vec()
    } else {
        a.mirrors.iter().map(String::as_str).collect()
    };
    data::download::download_mnist(&a.dir, &mirrors, true)?;
    outln!("MNIST is in {}", a.dir.display());
    Ok(())
}
