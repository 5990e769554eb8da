//! CSV files of tabular data (Iris and the like): one sample per row, one label column, the
//! other columns numeric features.
//!
//! The parser is small and hand-written so that every failure can name the file, the line
//! and the column: ragged rows, non-numeric or missing values, NaN and infinities, unknown
//! labels, an empty file. Fields may be quoted (`"setosa"`, `"a ""b"""`) but may not span
//! lines; blank lines are skipped; a UTF-8 byte order mark and Windows line ends are fine.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::dataset::{Dataset, Features};
use super::error::{Error, Result};

/// The most classes a CSV file may have: an integer label at or above it is almost always
/// a wrong label column (an id, a measurement), and would make a model that wide.
pub const MAX_CLASSES: usize = 65_536;

/// Which column holds the label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelColumn {
    /// The last column (the usual layout of Iris-style files).
    Last,
    /// The first column (the layout of the Kaggle MNIST CSV).
    First,
    /// The column at this 0-based index.
    Index(usize),
    /// The column with this header name (needs a header row).
    Name(String),
    /// The header column with an obvious label name ([`LABEL_NAMES`], any case); an error
    /// listing the columns when there is none (or no header).
    Auto,
}

/// The header names [`LabelColumn::Auto`] takes for the label column (compared without
/// regard to case).
pub const LABEL_NAMES: [&str; 5] = ["label", "class", "target", "species", "y"];

/// Whether the first non-blank line is a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// A header if any of its feature fields is not a number (always, when the label column
    /// is chosen by name).
    Auto,
    /// The first line is a header.
    Present,
    /// The first line is data.
    Absent,
}

/// How label text becomes a class index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Labels {
    /// Integers `0..n` if every label is one, otherwise class names as in [`Labels::Names`].
    Auto,
    /// Every label is an integer class index; `num_classes` is the largest plus one.
    Integers,
    /// Labels are class names, numbered in sorted order (as scikit-learn's `LabelEncoder`),
    /// so the same classes get the same numbers in every file.
    Names,
    /// Labels are class names from this list, numbered by position; any other label is an
    /// error. Use it to give a test file the exact numbering of its training file.
    Classes(Vec<String>),
}

/// Options for reading a CSV file; `CsvOptions::default()` fits Iris-style files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// The label column (default: the last one).
    pub label: LabelColumn,
    /// Header detection (default: automatic).
    pub header: Header,
    /// How labels map to classes (default: automatic).
    pub labels: Labels,
    /// At least this many classes (e.g. when a small file lacks the highest class);
    /// `None` counts them from the file.
    pub num_classes: Option<usize>,
    /// The field separator (default `b','`; `b';'` and `b'\t'` are common too).
    pub delimiter: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            label: LabelColumn::Last,
            header: Header::Auto,
            labels: Labels::Auto,
            num_classes: None,
            delimiter: b',',
        }
    }
}

/// Reads and parses a CSV file into a [`Dataset`] named after the file.
pub fn load_csv(path: &Path, options: &CsvOptions) -> Result<Dataset> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, "read the CSV file", e))?;
    let mut ds = parse_csv_bytes(&path.display().to_string(), &bytes, options)?;
    if let Some(stem) = path.file_stem() {
        ds.set_name(stem.to_string_lossy());
    }
    Ok(ds)
}

/// Parses CSV bytes, which must be UTF-8. `file` names the input in error messages and
/// the data set.
pub fn parse_csv_bytes(file: &str, bytes: &[u8], options: &CsvOptions) -> Result<Dataset> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_csv(file, text, options),
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
            Err(Error::NotUtf8 { file: file.to_string(), line })
        }
    }
}

/// Parses CSV text into a [`Dataset`] with `f32` features. `file` names the input in error
/// messages and the data set.
pub fn parse_csv(file: &str, text: &str, options: &CsvOptions) -> Result<Dataset> {
    if !options.delimiter.is_ascii() || options.delimiter == b'"' || options.delimiter == b'\n' {
        return Err(Error::InvalidArgument(format!(
            "{file}: the CSV delimiter must be an ASCII character other than '\"' and newline"
        )));
    }
    let delimiter = options.delimiter as char;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty());

    let empty = || Error::Empty { file: file.to_string(), what: "data rows" };
    let mut fields: Vec<String> = Vec::new();
    let (first_line, first) = rows.next().ok_or_else(empty)?;
    split_fields(file, first_line, first, delimiter, &mut fields)?;
    let width = fields.len();
    let first_fields = fields.clone();

    // Resolve the label column; a name needs the header.
    let label_col = match &options.label {
        LabelColumn::Auto => {
            let found: Vec<usize> = first_fields
                .iter()
                .enumerate()
                .filter(|(_, f)| LABEL_NAMES.iter().any(|n| f.trim().eq_ignore_ascii_case(n)))
                .map(|(c, _)| c)
                .collect();
            match found.as_slice() {
                [c] => *c,
                _ => {
                    let columns: Vec<String> = first_fields
                        .iter()
                        .enumerate()
                        .map(|(c, f)| format!("{c}: {:?}", f.trim()))
                        .collect();
                    return Err(Error::InvalidArgument(format!(
                        "{file}: which column is the label? {}; the first line's columns are {}; choose \
                         the label column with --label NAME or --label INDEX (0-based)",
                        if found.is_empty() {
                            format!("no column is named {}", LABEL_NAMES.join(", "))
                        } else {
                            format!("{} columns have label-like names", found.len())
                        },
                        columns.join(", ")
                    )));
                }
            }
        }
        LabelColumn::Last => width - 1,
        LabelColumn::First => 0,
        LabelColumn::Index(i) => *i,
        LabelColumn::Name(name) => {
            if options.header == Header::Absent {
                return Err(Error::InvalidArgument(format!(
                    "{file}: the label column is chosen by name ({name:?}) but the options say \
                     there is no header row; give its index instead, or allow a header"
                )));
            }
            first_fields.iter().position(|f| f == name).ok_or_else(|| Error::CsvNoSuchColumn {
                file: file.to_string(),
                wanted: format!("{name:?}"),
                available: first_fields.join(", "),
            })?
        }
    };
    if label_col >= width {
        return Err(Error::CsvNoSuchColumn {
            file: file.to_string(),
            wanted: format!("#{label_col} (0-based)"),
            available: format!("{width} column(s) on line {first_line}"),
        });
    }
    if width < 2 {
        return Err(Error::InvalidArgument(format!(
            "{file}: line {first_line}: only one column; a data set needs a label column and at \
             least one feature column (is the delimiter {delimiter:?} right?)"
        )));
    }

    let has_header = match options.header {
        Header::Present => true,
        Header::Absent => false,
        Header::Auto => {
            matches!(options.label, LabelColumn::Name(_) | LabelColumn::Auto)
                || first_fields
                    .iter()
                    .enumerate()
                    .any(|(c, f)| c != label_col && f.trim().parse::<f32>().is_err())
        }
    };
    let column_names: Vec<String> = if has_header {
        first_fields.iter().map(|f| f.trim().to_string()).collect()
    } else {
        (1..=width).map(|c| format!("column {c}")).collect()
    };

    let mut features: Vec<f32> = Vec::new();
    let mut raw_labels: Vec<(usize, String)> = Vec::new();
    let mut push_row = |line: usize, fields: &[String]| -> Result<()> {
        if fields.len() != width {
            return Err(Error::CsvRagged {
                file: file.to_string(),
                line,
                expected: width,
                found: fields.len(),
            });
        }
        for (c, field) in fields.iter().enumerate() {
            let value = field.trim();
            if c == label_col {
                raw_labels.push((line, value.to_string()));
                continue;
            }
            let x: f32 = value.parse().map_err(|_| Error::CsvNotANumber {
                file: file.to_string(),
                line,
                column: column_names[c].clone(),
                value: value.to_string(),
            })?;
            if !x.is_finite() {
                return Err(Error::CsvNotFinite {
                    file: file.to_string(),
                    line,
                    column: column_names[c].clone(),
                    value: value.to_string(),
                });
            }
            features.push(x);
        }
        Ok(())
    };
    if !has_header {
        push_row(first_line, &first_fields)?;
    }
    for (line, text) in rows {
        split_fields(file, line, text, delimiter, &mut fields)?;
        push_row(line, &fields)?;
    }
    if raw_labels.is_empty() {
        return Err(empty());
    }

    let (labels, class_names) = map_labels(file, &raw_labels, &options.labels)?;
    let mut num_classes = match &class_names {
        Some(names) => names.len(),
        None => labels.iter().max().map_or(0, |&m| m as usize + 1),
    };
    if let Some(n) = options.num_classes {
        if n > MAX_CLASSES {
            return Err(Error::InvalidArgument(format!(
                "{file}: num_classes {n} is more than the {MAX_CLASSES} classes a CSV data set \
                 may have"
            )));
        }
        if n < num_classes {
            let (i, &label) = labels.iter().enumerate().find(|(_, &l)| l as usize >= n).unwrap_or((0, &0));
            return Err(Error::LabelOutOfRange {
                file: file.to_string(),
                location: format!("line {}", raw_labels[i].0),
                label: label.into(),
                num_classes: n,
            });
        }
        if class_names.is_some() && n != num_classes {
            return Err(Error::InvalidArgument(format!(
                "{file}: {num_classes} class names found but num_classes is {n}; with class \
                 names, list every class with Labels::Classes instead"
            )));
        }
        num_classes = n;
    }
    let ds = Dataset::new(file, Features::F32(features), width - 1, labels, num_classes, class_names)?;
    if has_header {
        let names = column_names.into_iter().enumerate().filter(|&(c, _)| c != label_col).map(|(_, n)| n);
        return ds.with_feature_names(names.collect());
    }
    Ok(ds)
}

/// Turns label texts into class indices, plus class names for named labels.
fn map_labels(file: &str, raw: &[(usize, String)], mode: &Labels) -> Result<(Vec<u32>, Option<Vec<String>>)> {
    let as_integers = || -> Result<Vec<u32>> {
        raw.iter()
            .map(|(line, text)| match text.parse::<u32>() {
                Ok(label) if (label as usize) < MAX_CLASSES => Ok(label),
                Ok(_) => Err(Error::CsvBadLabel {
                    file: file.to_string(),
                    line: *line,
                    value: text.clone(),
                    expected: format!("a class index below {MAX_CLASSES} (is this really the label column?)"),
                }),
                Err(_) => Err(Error::CsvBadLabel {
                    file: file.to_string(),
                    line: *line,
                    value: text.clone(),
                    expected: "a non-negative integer class index".to_string(),
                }),
            })
            .collect()
    };
    let by_names = |names: Vec<String>, listed: bool| -> Result<(Vec<u32>, Option<Vec<String>>)> {
        let mut labels = Vec::with_capacity(raw.len());
        for (line, text) in raw {
            match names.iter().position(|n| n == text) {
                Some(i) => labels.push(i as u32),
                None => {
                    return Err(Error::CsvBadLabel {
                        file: file.to_string(),
                        line: *line,
                        value: text.clone(),
                        expected: if listed {
                            format!("one of the given classes ({})", names.join(", "))
                        } else {
                            "a class name".to_string()
                        },
                    })
                }
            }
        }
        Ok((labels, Some(names)))
    };
    let sorted_names = || -> Result<Vec<String>> {
        if let Some((line, _)) = raw.iter().find(|(_, t)| t.is_empty()) {
            return Err(Error::CsvBadLabel {
                file: file.to_string(),
                line: *line,
                value: String::new(),
                expected: "a class name (every row needs a label)".to_string(),
            });
        }
        Ok(raw.iter().map(|(_, t)| t.clone()).collect::<BTreeSet<_>>().into_iter().collect())
    };
    match mode {
        Labels::Integers => Ok((as_integers()?, None)),
        Labels::Names => by_names(sorted_names()?, false),
        Labels::Classes(names) => by_names(names.clone(), true),
        Labels::Auto => match as_integers() {
            Ok(labels) => Ok((labels, None)),
            Err(_) => by_names(sorted_names()?, false),
        },
    }
}

/// Splits one line into fields, honouring double quotes. Reuses `out`'s allocation.
fn split_fields(file: &str, line: usize, text: &str, delimiter: char, out: &mut Vec<String>) -> Result<()> {
    out.clear();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
        } else if c == '"' && field.trim().is_empty() {
            field.clear();
            in_quotes = true;
        } else if c == delimiter {
            out.push(std::mem::take(&mut field));
        } else {
            field.push(c);
        }
    }
    if in_quotes {
        return Err(Error::CsvUnterminatedQuote { file: file.to_string(), line });
    }
    out.push(field);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields() {
        let mut out = Vec::new();
        split_fields("f", 1, r#"1, "a,b" ,"say ""hi""",x"#, ',', &mut out).unwrap();
        assert_eq!(out, vec!["1", "a,b ", "say \"hi\"", "x"]);
        let e = split_fields("f", 7, r#"1,"open"#, ',', &mut out).unwrap_err();
        assert!(matches!(e, Error::CsvUnterminatedQuote { line: 7, .. }));
    }

    #[test]
    fn header_detection() {
        let o = CsvOptions::default();
        let with = parse_csv("t", "a,b,label\n1,2,x\n3,4,y\n", &o).unwrap();
        assert_eq!(with.len(), 2);
        let without = parse_csv("t", "1,2,x\n3,4,y\n", &o).unwrap();
        assert_eq!(without.len(), 2);
        let forced = CsvOptions { header: Header::Present, ..CsvOptions::default() };
        assert_eq!(parse_csv("t", "1,2,x\n3,4,y\n", &forced).unwrap().len(), 1);
    }
}
