//! The host side of mlp: datasets, loaders, training loop, CLI.
