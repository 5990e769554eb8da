//! The data sets the data flags name: an IDX folder (MNIST by default, or the data set
//! `--dataset` names; downloaded when missing) or CSV files.

use anyhow::Result;

use super::args::DataArgs;
use data::{self, catalog::IdxDataSet, csv::CsvOptions, csv::LabelColumn, Dataset};

/// Training and test data named by the data options.
pub fn load_data(args: &DataArgs) -> Result<(Dataset, Option<Dataset>)> {
    match &args.csv {
        Some(path) => {
            let mut opts = CsvOptions { label: LabelColumn::Auto, ..CsvOptions::default() };
            if let Some(l) = &args.label {
                opts.label = match l.parse::<usize>() {
                    Ok(i) => LabelColumn::Index(i),
                    Err(_) => LabelColumn::Name(l.clone()),
                };
            }
            let train = data::csv::load_csv(path, &opts)?;
            if let Some(w) = super::tabular::continuous_label_warning(&train) {
                eprintln!("{w}");
            }
            let test = match &args.csv_test {
                Some(p) => {
                    // Same class numbering as the training file.
                    if let Some(names) = train.class_names() {
                        opts.labels = data::csv::Labels::Classes(names.to_vec());
                    }
                    opts.num_classes = Some(train.num_classes());
                    Some(data::csv::load_csv(p, &opts)?)
                }
                None => None,
            };
            Ok((train, test))
        }
        None => {
            let set = args.data_set();
            let dir = set.resolve_dir(args.data.as_deref())?;
            let (train, test) = set.load(&dir)?;
            Ok((train, Some(test)))
        }
    }
}

impl DataArgs {
    /// The IDX data set `--dataset` names (MNIST when left out).
    pub fn data_set(&self) -> &'static IdxDataSet<'static> {
        self.dataset.unwrap_or(&data::catalog::MNIST)
    }
}
