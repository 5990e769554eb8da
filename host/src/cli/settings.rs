//! What the `train` flags resolve to: the recipe they start from and the run's
//! [`TrainSettings`] (from the recipe and the flags, or from a checkpoint being resumed), and
//! where the checkpoint goes.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::args::{Recipe, TrainArgs};
use crate::train::{Checkpoint, OptimizerArg, RunSource, TrainSettings};

impl Recipe {
    /// The recipe's settings (the tabular recipe sized like Iris's training split).
    pub fn settings(self) -> TrainSettings {
        self.settings_for(None)
    }

    /// The recipe's settings, the tabular recipe sized to `train` when given.
    pub fn settings_for(self, train: Option<&data::Dataset>) -> TrainSettings {
        match self {
            Recipe::Default => TrainSettings::default_recipe(),
            Recipe::Tutorial => TrainSettings::tutorial(),
            Recipe::Best => TrainSettings::best(),
            Recipe::Tabular => match train {
                Some(d) => TrainSettings::tabular(d.len(), d.input_len(), d.num_classes()),
                None => TrainSettings::tabular(120, 4, 3),
            },
        }
    }
}

impl TrainArgs {
    /// Whether any option that shapes the model or its optimization was given.
    pub fn any_training_option(&self) -> bool {
        self.hidden.is_some()
            || self.activation.is_some()
            || self.maxout_pieces.is_some()
            || self.optimizer.is_some()
            || self.optimizer_options.any()
            || self.lr.is_some()
            || self.schedule.is_some()
            || self.batch_size.is_some()
            || self.epochs.is_some()
            || self.dropout.is_some()
            || self.batch_norm
            || self.weight_decay.is_some()
            || self.grad_clip.is_some()
            || self.max_norm.is_some()
            || self.normalization.is_some()
    }

    /// The recipe the options apply to: `--recipe`, else the tabular recipe for CSV data,
    /// else the default recipe when no training option is given, else the tutorial's.
    pub fn recipe(&self) -> Recipe {
        self.recipe.unwrap_or(if self.data.csv.is_some() {
            Recipe::Tabular
        } else if self.any_training_option() {
            Recipe::Tutorial
        } else {
            Recipe::Default
        })
    }

    /// The run's settings: the recipe with every given option applied.
    pub fn settings(&self) -> TrainSettings {
        self.settings_for(None)
    }

    /// [`settings`](Self::settings) with the tabular recipe sized to the training set `train`.
    pub fn settings_for(&self, train: Option<&data::Dataset>) -> TrainSettings {
        let base = self.recipe().settings_for(train);
        let mut s = base.clone();
        if let Some(h) = &self.hidden {
            s.hidden = h.0.clone();
        }
        if let Some(v) = self.activation {
            s.activation = v;
        }
        if let Some(v) = self.maxout_pieces {
            s.maxout_pieces = v;
        }
        if let Some(v) = self.optimizer {
            s.optimizer = v;
            // A different optimizer gets its own customary rate unless --lr says otherwise.
            if v != base.optimizer {
                s.lr = None;
            }
        }
        if let Some(v) = self.lr {
            s.lr = Some(v);
        }
        if let Some(v) = self.schedule {
            s.schedule = v;
        }
        if let Some(v) = self.batch_size {
            s.batch_size = v;
        }
        if let Some(v) = self.epochs {
            s.epochs = v;
        }
        if let Some(v) = self.seed {
            s.seed = v;
        }
        if let Some(v) = self.dropout {
            s.dropout = v;
        }
        s.batch_norm |= self.batch_norm;
        if let Some(v) = self.weight_decay {
            s.weight_decay = v;
        } else if s.optimizer == OptimizerArg::Adamw {
            // PyTorch's AdamW default (its Adam's is 0).
            s.weight_decay = 0.01;
        }
        if let Some(v) = self.val_split {
            s.val_split = v;
        }
        if self.grad_clip.is_some() {
            s.grad_clip = self.grad_clip;
        }
        if let Some(v) = self.normalization {
            s.normalization = v;
        }
        if self.max_norm.is_some() {
            s.max_norm = self.max_norm;
        }
        if self.early_stop.is_some() {
            s.early_stop = self.early_stop;
        }
        s.optimizer_options = self.optimizer_options.over(&s.optimizer_options);
        if let Some(q) = self.qat {
            s.qat = Some(q.unwrap_or(s.epochs.div_ceil(3)));
        }
        if self.augment.is_some() {
            s.augment = self.augment;
        }
        s
    }

    /// The settings of this run: [`settings`](Self::settings), or when resuming, the
    /// checkpoint's with `--epochs` applied (which must leave epochs to train).
    pub fn run_settings(
        &self,
        resume: Option<&Checkpoint>,
        train: Option<&data::Dataset>,
    ) -> Result<TrainSettings> {
        let Some(ck) = resume else { return Ok(self.settings_for(train)) };
        let mut s = ck.settings.clone();
        if let Some(e) = self.epochs {
            s.epochs = e;
        }
        if s.epochs <= ck.epochs_done {
            bail!(
                "the checkpoint already has {} of {} epochs; pass --epochs N with N > {} to train further",
                ck.epochs_done,
                s.epochs,
                ck.epochs_done
            );
        }
        Ok(s)
    }

    /// Where the model goes: `--out`, else `model.mlp`.
    pub fn out_path(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from("model.mlp"))
    }

    /// Where the checkpoint goes: `--checkpoint`, else the `--out` path + ".ckpt".
    pub fn checkpoint_path(&self) -> PathBuf {
        self.checkpoint.clone().unwrap_or_else(|| {
            let mut p = self.out_path().into_os_string();
            p.push(".ckpt");
            PathBuf::from(p)
        })
    }

    /// What this run's command line records in its checkpoints.
    pub fn source(&self) -> RunSource {
        RunSource {
            out: self.out_path(),
            metrics: self.metrics.clone(),
            data: self.data.data.clone(),
            csv: self.data.csv.clone(),
            csv_test: self.data.csv_test.clone(),
            label: self.data.label.clone(),
            dataset: self.data.dataset.map(|set| set.name.to_string()),
        }
    }

    /// With `--resume`: the checkpoint fixes the run's settings, so an option that would
    /// change them is an error naming it (`--epochs` may extend the run); the data options,
    /// `--out` and `--metrics` come from the checkpoint where not given, and data options
    /// that name other data than the run's are errors.
    pub fn resuming(mut self, ck: &Checkpoint) -> Result<TrainArgs> {
        let fixed = [
            ("--recipe", self.recipe.is_some()),
            ("--hidden", self.hidden.is_some()),
            ("--activation", self.activation.is_some()),
            ("--maxout-pieces", self.maxout_pieces.is_some()),
            ("--optimizer", self.optimizer.is_some()),
            ("--lr", self.lr.is_some()),
            ("--schedule", self.schedule.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--seed", self.seed.is_some()),
            ("--dropout", self.dropout.is_some()),
            ("--batch-norm", self.batch_norm),
            ("--weight-decay", self.weight_decay.is_some()),
            ("--val-split", self.val_split.is_some()),
            ("--grad-clip", self.grad_clip.is_some()),
            ("--max-norm", self.max_norm.is_some()),
            ("--early-stop", self.early_stop.is_some()),
            ("--qat", self.qat.is_some()),
            ("--normalization", self.normalization.is_some()),
            ("--augment", self.augment.is_some()),
        ];
        let given: Vec<&str> = fixed.iter().filter(|(_, g)| *g).map(|(n, _)| *n).collect();
        if !given.is_empty() {
            bail!(
                "{} cannot change a resumed run: its settings come from the checkpoint; leave {} \
                 out to continue it (--epochs N may extend it), or start a new run without --resume",
                given.join(", "),
                if given.len() == 1 { "it" } else { "them" }
            );
        }
        let Some(src) = &ck.source else { return Ok(self) };
        let data_given = self.data.data.is_some()
            || self.data.dataset.is_some()
            || self.data.csv.is_some()
            || self.data.csv_test.is_some()
            || self.data.label.is_some();
        if data_given {
            for (flag, given, recorded) in [
                ("--data", &self.data.data, &src.data),
                ("--csv", &self.data.csv, &src.csv),
                ("--csv-test", &self.data.csv_test, &src.csv_test),
            ] {
                if given != recorded {
                    let was =
                        |v: &Option<PathBuf>| v.as_ref().map_or("none".into(), |p| p.display().to_string());
                    bail!(
                        "{flag} {}: this run was trained with {flag} {}; leave the data options out \
                         to continue it on its own data",
                        was(given),
                        was(recorded)
                    );
                }
            }
            let given = self.data.data_set().name;
            let recorded = src.dataset.as_deref().unwrap_or(data::catalog::MNIST.name);
            if given != recorded {
                bail!(
                    "--dataset {given}: this run was trained with --dataset {recorded}; leave the \
                     data options out to continue it on its own data"
                );
            }
        } else {
            self.data.dataset = match &src.dataset {
                Some(name) => Some(data::catalog::find(name)?),
                None => None,
            };
            self.data.data = src.data.clone();
            self.data.csv = src.csv.clone();
            self.data.csv_test = src.csv_test.clone();
            self.data.label = src.label.clone();
        }
        if self.out.is_none() {
            self.out = Some(src.out.clone());
        }
        if self.metrics.is_none() {
            self.metrics = src.metrics.clone();
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command, TrainArgs};
    use crate::train::TrainSettings;

    fn train_args(args: &[&str]) -> TrainArgs {
        let argv = ["host", "train"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Train(a) => *a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn bare_train_uses_the_default_recipe_and_options_apply_to_the_tutorial() {
        assert_eq!(train_args(&[]).settings(), TrainSettings::default_recipe());
        assert_eq!(train_args(&["--data", "d", "--quiet"]).settings(), TrainSettings::default_recipe());
        let literal = train_args(&[
            "--hidden",
            "256",
            "--optimizer",
            "adam",
            "--lr",
            "0.001",
            "--batch-size",
            "256",
            "--epochs",
            "10",
        ]);
        assert_eq!(literal.settings(), TrainSettings::tutorial());
        let explicit = train_args(&["--recipe", "default", "--epochs", "3"]).settings();
        assert_eq!(explicit, TrainSettings { epochs: 3, ..TrainSettings::default_recipe() });
    }

    #[test]
    fn another_optimizer_gets_its_customary_rate_unless_lr_is_given() {
        let s = train_args(&["--optimizer", "sgd"]).settings();
        assert_eq!(s.learning_rate(), 0.01);
        let s = train_args(&["--optimizer", "adadelta"]).settings();
        assert_eq!(s.learning_rate(), 1.0);
        let s = train_args(&["--optimizer", "sgd", "--lr", "0.5"]).settings();
        assert_eq!(s.learning_rate(), 0.5);
    }
}
