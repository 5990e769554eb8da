//! The one writer of numeric arrays in generated source: a named array as a Rust `static` or a
//! C `static const`, its values a fixed number to a line. Every emitter writes its arrays (the
//! parameters, tables, images and the host's outputs) through [`Array`].

use std::fmt::{Display, Write as _};

use anyhow::{bail, Result};

/// The language of generated source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lang {
    /// Rust: `static NAME: [T; N] = [...];`.
    Rust,
    /// C: `static const T NAME[N] = {...};`.
    C,
}

/// A named numeric array to write in Rust or C syntax.
#[derive(Clone, Copy, Debug)]
pub(super) struct Array<'a> {
    lang: Lang,
    name: &'a str,
    elem: &'a str,
    per_line: usize,
    public: bool,
    wrapper: Option<(&'a str, &'a str)>,
    aligned: bool,
}

impl<'a> Array<'a> {
    /// `static NAME: [ELEM; N] = [...];`, `per_line` values to a line. `elem` may itself be an
    /// array type (`[u8; 784]`), whose values are rows from [`rust_row`].
    pub(super) fn rust(name: &'a str, elem: &'a str, per_line: usize) -> Self {
        Array { lang: Lang::Rust, name, elem, per_line, public: false, wrapper: None, aligned: false }
    }

    /// `static const ELEM NAME[N] = {...};`, `per_line` values to a line. An empty array is
    /// written with one zero: zero-length arrays are not C.
    pub(super) fn c(name: &'a str, elem: &'a str, per_line: usize) -> Self {
        Array { lang: Lang::C, name, elem, per_line, public: false, wrapper: None, aligned: false }
    }

    /// Rust: `pub static`.
    pub(super) fn public(self) -> Self {
        Array { public: true, ..self }
    }

    /// Rust: the array inside a wrapper, as type `ty<[ELEM; N]>` and value `value([...])`, e.g.
    /// `("Align4", "Align4")` or `("Option", "Some")`.
    pub(super) fn wrapped(self, ty: &'a str, value: &'a str) -> Self {
        Array { wrapper: Some((ty, value)), ..self }
    }

    /// C: 4-byte aligned (`MLP_ALIGNED`, which the header defines).
    pub(super) fn aligned(self) -> Self {
        Array { aligned: true, ..self }
    }

    /// Appends the declaration with `values` (each written as it displays) and a newline.
    pub(super) fn write<T: Display>(&self, out: &mut String, values: impl IntoIterator<Item = T>) {
        let values: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
        let n = values.len();
        match self.lang {
            Lang::Rust => {
                let public = if self.public { "pub " } else { "" };
                let array = format!("[{}; {n}]", self.elem);
                let (ty, open, close) = match self.wrapper {
                    Some((ty, value)) => (format!("{ty}<{array}>"), format!("{value}(["), "])"),
                    None => (array, "[".to_string(), "]"),
                };
                let _ = write!(out, "{public}static {}: {ty} = {open}", self.name);
                list(out, &values, self.per_line);
                let _ = writeln!(out, "{close};");
            }
            Lang::C => {
                let aligned = if self.aligned { " MLP_ALIGNED" } else { "" };
                let _ = write!(out, "static const {} {}[{}]{aligned} = {{", self.elem, self.name, n.max(1));
                if n == 0 {
                    list(out, &[if self.elem == "float" { "0.0f" } else { "0" }], self.per_line);
                } else {
                    list(out, &values, self.per_line);
                }
                out.push_str("};\n");
            }
        }
    }
}

/// One row of a two-dimensional Rust array, as a value for [`Array::write`]: `per_line`
/// values to a line, or all on the row's line (`None`).
pub(super) fn rust_row<T: Display>(values: impl IntoIterator<Item = T>, per_line: Option<usize>) -> String {
    let mut row = String::from("[");
    match per_line {
        Some(per_line) => {
            let values: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
            list(&mut row, &values, per_line);
            row.push_str("    ]");
        }
        None => {
            for v in values {
                let _ = write!(row, "{v}, ");
            }
            row.push(']');
        }
    }
    row
}

/// Appends `values` as a comma-separated list, `per_line` to a line, indented.
fn list(out: &mut String, values: &[impl AsRef<str>], per_line: usize) {
    for (i, v) in values.iter().enumerate() {
        if i % per_line == 0 {
            out.push_str("\n    ");
        } else {
            out.push(' ');
        }
        out.push_str(v.as_ref());
        out.push(',');
    }
    out.push('\n');
}

/// An f32 as a Rust or C literal that reads back to the same bits (shortest round trip).
pub(super) fn f32_literal(v: f32, lang: Lang) -> Result<String> {
    if !v.is_finite() {
        bail!("the model has a non-finite parameter ({v}); it cannot be exported");
    }
    let s = format!("{v:?}");
    Ok(if lang == Lang::C { format!("{s}f") } else { s })
}
