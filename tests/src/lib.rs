//! An independent f64 reference MLP used to check core.
