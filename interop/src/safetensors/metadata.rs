//! The `mlp.*` metadata strings: their keys, and activations and float lists as text.

use mlp::Activation;

use crate::{Error, Result};

/// `784-256-10`: input width, then each layer's outputs.
pub(super) const TOPOLOGY: &str = "mlp.topology";
/// The hidden activation: one name for all hidden layers, or one per layer, comma-separated.
pub(super) const ACTIVATION: &str = "mlp.activation";
/// The output layer's activation.
pub(super) const OUTPUT: &str = "mlp.output";
/// Input scale: one number, or a JSON array with one per input feature.
pub(super) const INPUT_SCALE: &str = "mlp.input_scale";
/// Input offset, like [`INPUT_SCALE`].
pub(super) const INPUT_OFFSET: &str = "mlp.input_offset";
/// Class names by output index, a JSON array of strings.
pub(super) const CLASSES: &str = "mlp.classes";
/// The Python expression of the matching `nn.Sequential` (written, never read).
pub(super) const SEQUENTIAL: &str = "mlp.sequential";

/// The activations this module names, for messages.
const SUPPORTED: &str = "identity, relu, leaky_relu(ALPHA), elu(ALPHA), gelu, sigmoid, tanh, softmax";

/// `relu`, `leaky_relu(0.01)`, `elu(1)`: core's name, with the parameter where it has one.
pub(super) fn activation_text(a: Activation) -> String {
    match a {
        Activation::LeakyRelu(alpha) | Activation::Elu(alpha) => format!("{}({alpha})", a.name()),
        _ => a.name().to_string(),
    }
}

/// Parses [`activation_text`]'s spelling (case aside; `leaky_relu` and `elu` without a
/// parameter take PyTorch's defaults, 0.01 and 1). Maxout is refused by name.
pub(super) fn parse_activation(text: &str) -> Result<Activation> {
    let text = text.trim().to_ascii_lowercase();
    let (name, param) = match text.split_once('(') {
        Some((name, rest)) => {
            let Some(p) = rest.strip_suffix(')') else {
                return Err(unknown_activation(&text));
            };
            let alpha: f32 = p.trim().parse().map_err(|_| unknown_activation(&text))?;
            (name.trim(), Some(alpha))
        }
        None => (text.as_str(), None),
    };
    let a = match (name, param) {
        ("identity", None) => Activation::Identity,
        ("relu", None) => Activation::Relu,
        ("gelu", None) => Activation::Gelu,
        ("sigmoid", None) => Activation::Sigmoid,
        ("tanh", None) => Activation::Tanh,
        ("softmax", None) => Activation::Softmax,
        ("leaky_relu", alpha) => Activation::LeakyRelu(alpha.unwrap_or(0.01)),
        ("elu", alpha) => Activation::Elu(alpha.unwrap_or(1.0)),
        ("maxout", _) => return Err(maxout()),
        _ => return Err(unknown_activation(&text)),
    };
    Ok(a)
}

/// Maxout has no module in `nn.Sequential` (it is a reshape and a max over pieces).
pub(super) fn maxout() -> Error {
    Error::new(
        "maxout layers have no nn.Sequential form (a Linear then .view(-1, n, k).max(-1)), so safetensors \
         with state_dict names cannot hold them; export a model with another activation, or use ONNX",
    )
}

fn unknown_activation(text: &str) -> Error {
    Error::new(format!(
        "activation '{text}' in the metadata is not one this tool knows; supported: {SUPPORTED}"
    ))
}

/// The `torch.nn` module of an activation (`dim=1`: softmax over each sample's outputs).
pub(super) fn module_expr(a: Activation) -> Result<String> {
    Ok(match a {
        Activation::Identity => "nn.Identity()".into(),
        Activation::Relu => "nn.ReLU()".into(),
        Activation::Gelu => "nn.GELU()".into(),
        Activation::Sigmoid => "nn.Sigmoid()".into(),
        Activation::Tanh => "nn.Tanh()".into(),
        Activation::Softmax => "nn.Softmax(dim=1)".into(),
        Activation::LeakyRelu(alpha) => format!("nn.LeakyReLU({alpha:?})"),
        Activation::Elu(alpha) => format!("nn.ELU({alpha:?})"),
        Activation::Maxout(_) => return Err(maxout()),
    })
}

/// One number when all of `v` are equal (a global scale), else a JSON array. Rust prints
/// the shortest decimal that parses back to the same f32, so the text round-trips exactly.
pub(super) fn floats_text(v: &[f32]) -> String {
    match v.first() {
        Some(&first) if v.iter().all(|x| x.to_bits() == first.to_bits()) => format!("{first:?}"),
        _ => {
            let items: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
            format!("[{}]", items.join(","))
        }
    }
}

/// Parses [`floats_text`]'s form for `n` features: one number (repeated `n` times) or an
/// array of exactly `n`. Parsed with Rust's correctly rounded `f32` parser, so our own
/// exports come back bit for bit.
pub(super) fn parse_floats(key: &str, text: &str, n: usize) -> Result<Vec<f32>> {
    let bad = || {
        Error::new(format!(
            "metadata {key} is not one number or a JSON array of {n} numbers (one per input feature)"
        ))
    };
    let text = text.trim();
    let Some(inner) = text.strip_prefix('[') else {
        let x: f32 = text.parse().map_err(|_| bad())?;
        return finite(key, vec![x; n]);
    };
    let inner = inner.strip_suffix(']').ok_or_else(bad)?;
    // Count before allocating: the list must have exactly n items.
    if inner.split(',').count() != n {
        return Err(bad());
    }
    let v =
        inner.split(',').map(|s| s.trim().parse::<f32>().map_err(|_| bad())).collect::<Result<Vec<_>>>()?;
    finite(key, v)
}

fn finite(key: &str, v: Vec<f32>) -> Result<Vec<f32>> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(v)
    } else {
        Err(Error::new(format!("metadata {key} holds a value that is not finite")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_round_trip_through_their_text() {
        for a in [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu(0.2),
            Activation::Elu(0.5),
            Activation::Gelu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Softmax,
        ] {
            assert_eq!(parse_activation(&activation_text(a)).unwrap(), a);
        }
        assert_eq!(parse_activation("ReLU").unwrap(), Activation::Relu);
        assert_eq!(parse_activation("leaky_relu").unwrap(), Activation::LeakyRelu(0.01));
        assert!(parse_activation("maxout").unwrap_err().to_string().contains("maxout layers"));
        assert!(parse_activation("swish").unwrap_err().to_string().contains("supported: identity"));
        assert!(parse_activation("elu(x)").is_err());
    }

    #[test]
    fn floats_round_trip_bit_for_bit() {
        let v = [1.0f32 / 255.0, -0.1307 / 0.3081, 1e-39, 3.0];
        assert_eq!(parse_floats("k", &floats_text(&v), 4).unwrap(), v);
        assert_eq!(floats_text(&[0.5; 3]), "0.5");
        assert_eq!(parse_floats("k", "0.5", 3).unwrap(), [0.5; 3]);
        assert!(parse_floats("k", "[1,2]", 3).unwrap_err().to_string().contains("array of 3"));
        assert!(parse_floats("k", "[1,2,x]", 3).is_err());
        assert!(parse_floats("k", "inf", 1).unwrap_err().to_string().contains("not finite"));
    }
}
