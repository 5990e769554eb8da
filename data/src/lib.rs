//! Data sets for training and evaluation: MNIST-style IDX files and CSV tables, loaded into
//! memory as a [`Dataset`], split with a seed, and served in batches by a [`DataLoader`]
//! (the PyTorch `Dataset`/`DataLoader` pair, without allocation per batch).
//!
//! Every failure is an [`Error`] whose message names the file (and line, for CSV), says
//! what is wrong and what to do; no input makes this module panic.
//!
//! ```no_run
//! use data::{DataLoader, LoaderOptions, Normalization};
//! # fn main() -> Result<(), data::Error> {
//! let dir = data::download::resolve_mnist_dir(None)?; // --data, $MNIST_DIR, ./data/mnist, download
//! let (train, test) = data::idx::load_mnist(&dir)?;
//! let (train, val) = train.split(0.1, 42)?;
//! let mut loader = DataLoader::new(&train, LoaderOptions {
//!     batch_size: 256,
//!     shuffle: true,
//!     seed: 42,
//!     normalization: Normalization::MNIST,
//!     ..LoaderOptions::default()
//! })?;
//! # let _ = (test, val, &mut loader);
//! # Ok(()) }
//! ```

mod ahead;
pub mod augment;
pub mod catalog;
pub mod csv;
mod dataset;
pub mod download;
mod error;
pub mod idx;
pub mod loader;

pub use dataset::{Dataset, Features, Row};
pub use error::{Error, FailureKind, MirrorFailure, Result};
pub use loader::{DataLoader, LoaderOptions, Normalization};
