//! CSV reader: Iris-style files, label options, and every kind of malformed input with its
//! line number.

use data::csv::{load_csv, parse_csv, parse_csv_bytes, CsvOptions, Header, LabelColumn, Labels};
use data::{Error, Features};

const IRIS: &str = "\
sepal_length,sepal_width,petal_length,petal_width,species
5.1,3.5,1.4,0.2,setosa
7.0,3.2,4.7,1.4,versicolor
6.3,3.3,6.0,2.5,virginica
4.9,3.0,1.4,0.2,setosa
";

fn opts() -> CsvOptions {
    CsvOptions::default()
}

fn f32s(f: &Features) -> &[f32] {
    match f {
        Features::F32(v) => v,
        Features::U8(_) => panic!("CSV features must be f32"),
    }
}

#[test]
fn iris_with_header_and_class_names() {
    let ds = parse_csv("iris.csv", IRIS, &opts()).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.input_len(), 4);
    assert_eq!(ds.num_classes(), 3);
    assert_eq!(ds.class_names().unwrap(), &["setosa".to_string(), "versicolor".into(), "virginica".into()]);
    assert_eq!(ds.labels(), &[0, 1, 2, 0]);
    assert_eq!(&f32s(ds.features())[4..8], &[7.0, 3.2, 4.7, 1.4]);
}

#[test]
fn label_by_name_index_and_first() {
    let by_name = CsvOptions { label: LabelColumn::Name("species".into()), ..opts() };
    assert_eq!(parse_csv("f", IRIS, &by_name).unwrap().labels(), &[0, 1, 2, 0]);

    let text = "0,1.5,2.5\n2,3.5,4.5\n1,0,0\n";
    let first = CsvOptions { label: LabelColumn::First, ..opts() };
    let ds = parse_csv("f", text, &first).unwrap();
    assert_eq!(ds.labels(), &[0, 2, 1]);
    assert_eq!(ds.num_classes(), 3);
    assert!(ds.class_names().is_none());
    assert_eq!(&f32s(ds.features())[..2], &[1.5, 2.5]);

    let middle = CsvOptions { label: LabelColumn::Index(1), ..opts() };
    let ds = parse_csv("f", "1.0,a,2.0\n3.0,b,4.0\n", &middle).unwrap();
    assert_eq!(f32s(ds.features()), &[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(ds.labels(), &[0, 1]);

    let missing = CsvOptions { label: LabelColumn::Name("class".into()), ..opts() };
    let e = parse_csv("f", IRIS, &missing).unwrap_err();
    assert!(matches!(e, Error::CsvNoSuchColumn { .. }), "{e}");
    assert!(e.to_string().contains("species"), "{e}");
    let e = parse_csv("f", "1,2\n", &CsvOptions { label: LabelColumn::Index(5), ..opts() }).unwrap_err();
    assert!(matches!(e, Error::CsvNoSuchColumn { .. }), "{e}");
    let e = parse_csv("f", IRIS, &CsvOptions { header: Header::Absent, ..by_name }).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[test]
fn explicit_header_options() {
    // A header of numbers is only recognised when asked for.
    let text = "1,2,3\n4,5,0\n";
    assert_eq!(parse_csv("f", text, &opts()).unwrap().len(), 2);
    let present = CsvOptions { header: Header::Present, ..opts() };
    assert_eq!(parse_csv("f", text, &present).unwrap().len(), 1);
    let absent = CsvOptions { header: Header::Absent, ..opts() };
    let e = parse_csv("f", IRIS, &absent).unwrap_err();
    assert!(matches!(e, Error::CsvNotANumber { line: 1, .. }), "{e}");
}

#[test]
fn label_modes() {
    let ints = "1,2,3\n4,5,7\n";
    let ds = parse_csv("f", ints, &opts()).unwrap();
    assert_eq!((ds.labels(), ds.num_classes()), (&[3u32, 7][..], 8));

    let names = CsvOptions { labels: Labels::Names, ..opts() };
    let ds = parse_csv("f", ints, &names).unwrap();
    assert_eq!(ds.class_names().unwrap(), &["3".to_string(), "7".into()]);
    assert_eq!(ds.labels(), &[0, 1]);

    let e = parse_csv("f", IRIS, &CsvOptions { labels: Labels::Integers, ..opts() }).unwrap_err();
    assert!(matches!(e, Error::CsvBadLabel { line: 2, .. }), "{e}");

    let fixed = CsvOptions {
        labels: Labels::Classes(vec!["virginica".into(), "versicolor".into(), "setosa".into()]),
        ..opts()
    };
    assert_eq!(parse_csv("f", IRIS, &fixed).unwrap().labels(), &[2, 1, 0, 2]);
    let too_few = CsvOptions { labels: Labels::Classes(vec!["setosa".into(), "virginica".into()]), ..opts() };
    let e = parse_csv("f", IRIS, &too_few).unwrap_err();
    assert!(matches!(e, Error::CsvBadLabel { line: 3, .. }), "{e}");
    assert!(e.to_string().contains("versicolor"), "{e}");

    let wider = CsvOptions { num_classes: Some(10), ..opts() };
    assert_eq!(parse_csv("f", ints, &wider).unwrap().num_classes(), 10);
    let narrower = CsvOptions { num_classes: Some(5), ..opts() };
    let e = parse_csv("f", ints, &narrower).unwrap_err();
    assert!(matches!(e, Error::LabelOutOfRange { label: 7, num_classes: 5, .. }), "{e}");
    assert!(e.to_string().contains("line 2"), "{e}");

    // An id column picked as the label by mistake: a clear error, not a 4-billion-class model.
    let e =
        parse_csv("f", "1,2,4000000000\n", &CsvOptions { labels: Labels::Integers, ..opts() }).unwrap_err();
    assert!(matches!(e, Error::CsvBadLabel { line: 1, .. }), "{e}");
    assert!(e.to_string().contains("label column"), "{e}");
    let e = parse_csv("f", "a,b\n1,\n", &opts()).unwrap_err();
    assert!(matches!(e, Error::CsvBadLabel { line: 2, .. }), "{e}");
}

#[test]
fn ragged_rows_give_the_line() {
    let text = "a,b,label\n1,2,x\n\n3,4\n";
    let e = parse_csv("ragged.csv", text, &opts()).unwrap_err();
    assert!(matches!(e, Error::CsvRagged { line: 4, expected: 3, found: 2, .. }), "{e}");
    assert!(e.to_string().starts_with("ragged.csv: line 4: 2 fields"), "{e}");
    let e = parse_csv("f", "1,2,0\n1,2,3,0\n", &opts()).unwrap_err();
    assert!(matches!(e, Error::CsvRagged { line: 2, found: 4, .. }), "{e}");
}

#[test]
fn non_numeric_missing_nan_and_infinite_values() {
    let e = parse_csv("f", "a,b,y\n1,2,0\n1,two,1\n", &opts()).unwrap_err();
    match &e {
        Error::CsvNotANumber { line, column, value, .. } => {
            assert_eq!((*line, column.as_str(), value.as_str()), (3, "b", "two"))
        }
        other => panic!("wrong error: {other}"),
    }
    let e = parse_csv("f", "1,2,0\n,2,1\n", &opts()).unwrap_err();
    assert!(matches!(e, Error::CsvNotANumber { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("missing value"), "{e}");
    assert!(e.to_string().contains("column 1"), "{e}");
    for bad in ["NaN", "nan", "inf", "-inf", "infinity", "1e39"] {
        let text = format!("a,b,y\n1,2,0\n3,{bad},1\n");
        let e = parse_csv("f", &text, &opts()).unwrap_err();
        assert!(matches!(e, Error::CsvNotFinite { line: 3, .. }), "{bad}: {e}");
    }
}

#[test]
fn empty_inputs() {
    for text in ["", "\n\n", "  \r\n", "a,b,label\n", "\u{feff}"] {
        let e = parse_csv("empty.csv", text, &opts()).unwrap_err();
        assert!(matches!(e, Error::Empty { .. }), "{text:?}: {e}");
        assert!(e.to_string().starts_with("empty.csv: empty"), "{e}");
    }
    let e = parse_csv("f", "1\n2\n", &opts()).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[test]
fn crlf_bom_blank_lines_quotes_and_delimiters() {
    let text = "\u{feff}\"a\",\"b\",\"class\"\r\n1,2,\"Iris setosa\"\r\n\r\n3 , 4 ,\"Iris, virginica\"\r\n";
    let ds = parse_csv("f", text, &opts()).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.class_names().unwrap(), &["Iris setosa".to_string(), "Iris, virginica".into()]);
    assert_eq!(f32s(ds.features()), &[1.0, 2.0, 3.0, 4.0]);
    let e = parse_csv("f", "a,b,c\n1,2,\"open\n", &opts()).unwrap_err();
    assert!(matches!(e, Error::CsvUnterminatedQuote { line: 2, .. }), "{e}");

    let semi = CsvOptions { delimiter: b';', ..opts() };
    assert_eq!(parse_csv("f", "1;2;0\n3;4;1\n", &semi).unwrap().len(), 2);
    let tab = CsvOptions { delimiter: b'\t', ..opts() };
    assert_eq!(parse_csv("f", "1\t2\t0\n", &tab).unwrap().len(), 1);
    let e = parse_csv("f", "1,2\n", &CsvOptions { delimiter: b'"', ..opts() }).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[test]
fn not_utf8_gives_the_line() {
    let e = parse_csv_bytes("latin1.csv", b"a,b,y\n1,2,\xe9t\xe9\n", &opts()).unwrap_err();
    assert!(matches!(e, Error::NotUtf8 { line: 2, .. }), "{e}");
}

#[test]
fn load_from_a_file_and_a_missing_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("iris.csv");
    std::fs::write(&p, IRIS).unwrap();
    let ds = load_csv(&p, &opts()).unwrap();
    assert_eq!(ds.name(), "iris");
    assert_eq!(ds.len(), 4);
    let e = load_csv(&dir.path().join("nope.csv"), &opts()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("nope.csv"), "{e}");
    // Errors from a file name the path.
    std::fs::write(&p, "a,b,y\n1,x,0\n").unwrap();
    let e = load_csv(&p, &opts()).unwrap_err();
    assert!(e.to_string().contains("iris.csv: line 2"), "{e}");
}

#[test]
fn mutated_inputs_never_panic() {
    let seed = IRIS.as_bytes();
    let alphabet = b",\"\n\r;0123456789.-eNaInf \t\xff";
    let mut rng = mlp::Rng::new(11);
    for _ in 0..4000 {
        let mut bytes = seed.to_vec();
        for _ in 0..1 + rng.below(6) {
            let i = rng.below(bytes.len() as u32 + 1) as usize;
            let c = alphabet[rng.below(alphabet.len() as u32) as usize];
            match rng.below(3) {
                0 if i < bytes.len() => bytes[i] = c,
                1 if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, c),
            }
        }
        for o in [opts(), CsvOptions { label: LabelColumn::Name("species".into()), ..opts() }] {
            if let Ok(ds) = parse_csv_bytes("m", &bytes, &o) {
                assert!(ds.labels().iter().all(|&l| (l as usize) < ds.num_classes()));
            }
        }
    }
}
