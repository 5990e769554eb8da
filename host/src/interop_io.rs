//! Between the host's in-memory models and the `interop` crate's: a [`SavedModel`] as an
//! [`interop::FloatModel`] for the f32 exporters, and an imported one back.

use interop::{FloatModel, InputNormalization};

use crate::model_io::{InputTransformBuf, ModelNames, SavedModel};

/// `model` as the f32 exporters take it (its input transform and class names included).
pub fn float_model(model: &SavedModel) -> FloatModel {
    FloatModel {
        topology: model.topology.clone(),
        params: model.params.clone(),
        running: model.running.clone(),
        input: Some(InputNormalization {
            scale: model.input.scale.clone(),
            offset: model.input.offset.clone(),
        }),
        classes: model.names.classes.clone(),
        notes: Vec::new(),
    }
}

/// An imported model with the input transform `input` (the file's own, or the one the user
/// named) as a model the host saves and runs.
pub fn saved_model(model: FloatModel, input: InputTransformBuf) -> SavedModel {
    SavedModel {
        topology: model.topology,
        params: model.params,
        running: model.running,
        input,
        names: ModelNames { classes: model.classes, features: Vec::new() },
    }
}
