//! The few tables of TFLite's `schema.fbs` this crate reads and writes, by hand on the
//! `flatbuffers` crate's `Table`, `Verifier` and builder.
//!
//! Why by hand: flatc's generated code for the whole schema is ~20k lines for ten tables we
//! use, and the Debian flatc (2.0.8) does not match the current runtime crate (25.x). The
//! vtable slots below are `4 + 2 · field index` in schema.fbs order (checked against
//! LiteRT 2.3.0's schema_py_generated.py). [`verify`] runs the crate's verifier over every
//! field this module reads, with limits, before any accessor runs; the accessors' `unsafe`
//! relies on that and on each accessor reading its slot as the type the verifier checked.

use flatbuffers::{
    ForwardsUOffset, InvalidFlatbuffer, Table, TableVerifier, Vector, Verifiable, Verifier, VerifierOptions,
};

/// Tensor types (schema.fbs `TensorType`) this crate meets.
pub mod tensor_type {
    /// FLOAT32.
    pub const FLOAT32: i8 = 0;
    /// INT32.
    pub const INT32: i8 = 2;
    /// INT8.
    pub const INT8: i8 = 9;

    /// The schema's name of a tensor type, for messages.
    pub fn name(t: i8) -> String {
        const NAMES: [&str; 20] = [
            "FLOAT32",
            "FLOAT16",
            "INT32",
            "UINT8",
            "INT64",
            "STRING",
            "BOOL",
            "INT16",
            "COMPLEX64",
            "INT8",
            "FLOAT64",
            "COMPLEX128",
            "UINT64",
            "RESOURCE",
            "VARIANT",
            "UINT32",
            "UINT16",
            "INT4",
            "BFLOAT16",
            "INT2",
        ];
        usize::try_from(t)
            .ok()
            .and_then(|i| NAMES.get(i))
            .map_or_else(|| format!("type #{t}"), |n| n.to_string())
    }
}

/// Builtin operator codes (schema.fbs `BuiltinOperator`) this crate reads or writes.
pub mod op {
    /// DEQUANTIZE.
    pub const DEQUANTIZE: i32 = 6;
    /// FULLY_CONNECTED.
    pub const FULLY_CONNECTED: i32 = 9;
    /// LOGISTIC.
    pub const LOGISTIC: i32 = 14;
    /// RESHAPE.
    pub const RESHAPE: i32 = 22;
    /// SOFTMAX.
    pub const SOFTMAX: i32 = 25;
    /// TANH.
    pub const TANH: i32 = 28;
    /// QUANTIZE.
    pub const QUANTIZE: i32 = 114;

    /// The schema's name of a builtin operator, for messages.
    pub fn name(code: i32) -> String {
        usize::try_from(code)
            .ok()
            .and_then(|i| super::super::op_names::BUILTIN_OPERATOR_NAMES.get(i))
            .map_or_else(|| format!("builtin operator #{code}"), |n| n.to_string())
    }
}

/// `BuiltinOptions` union tags used here.
pub mod options {
    /// FullyConnectedOptions.
    pub const FULLY_CONNECTED: u8 = 8;
    /// SoftmaxOptions.
    pub const SOFTMAX: u8 = 9;
}

/// Fused activations (schema.fbs `ActivationFunctionType`).
pub mod activation {
    /// NONE.
    pub const NONE: i8 = 0;
    /// RELU.
    pub const RELU: i8 = 1;
}

/// The verifier's limits: depth and table counts far above an MLP's few dozen tables, and
/// an apparent size (shared vtables and strings count once per use) of 16 times the buffer
/// plus 1 MiB: a DAG that expands past it is hostile and would make verification slow.
fn verifier_options(len: usize) -> VerifierOptions {
    let max_apparent_size = len.saturating_mul(16).saturating_add(1 << 20).min(1 << 31);
    VerifierOptions { max_depth: 16, max_tables: 100_000, max_apparent_size, ..Default::default() }
}

/// Verifies `bytes` as a TFLite model (the fields this module reads) and returns its root.
pub fn verify(bytes: &[u8]) -> Result<Model<'_>, InvalidFlatbuffer> {
    flatbuffers::root_with_opts::<Model>(&verifier_options(bytes.len()), bytes)
}

macro_rules! table {
    ($(#[$doc:meta])* $name:ident { $($field:literal: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name<'a>(Table<'a>);

        impl<'a> flatbuffers::Follow<'a> for $name<'a> {
            type Inner = $name<'a>;
            unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
                // SAFETY: the caller guarantees a table at `loc` (the verifier checked it).
                $name(unsafe { Table::new(buf, loc) })
            }
        }

        impl Verifiable for $name<'_> {
            fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
                let t = v.visit_table(pos)?;
                $(let t = t.visit_field::<$ty>(stringify!($name), $field, false)?;)*
                let t = extra_verify::<$name>(t)?;
                t.finish();
                Ok(())
            }
        }
    };
}

/// Unions, verified by their tag (only the options tables read here).
trait ExtraVerify {
    fn extra<'v, 'o, 'b>(
        t: TableVerifier<'v, 'o, 'b>,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        Ok(t)
    }
}

fn extra_verify<'v, 'o, 'b, T: ExtraVerify>(
    t: TableVerifier<'v, 'o, 'b>,
) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
    T::extra(t)
}

table!(
    /// schema.fbs `Model`.
    Model {
        4: u32, 6: ForwardsUOffset<Vector<'_, ForwardsUOffset<OperatorCode<'_>>>>,
        8: ForwardsUOffset<Vector<'_, ForwardsUOffset<SubGraph<'_>>>>,
        12: ForwardsUOffset<Vector<'_, ForwardsUOffset<Buffer<'_>>>>,
        16: ForwardsUOffset<Vector<'_, ForwardsUOffset<Metadata<'_>>>>,
    }
);
table!(
    /// schema.fbs `SubGraph`.
    SubGraph {
        4: ForwardsUOffset<Vector<'_, ForwardsUOffset<Tensor<'_>>>>,
        6: ForwardsUOffset<Vector<'_, i32>>, 8: ForwardsUOffset<Vector<'_, i32>>,
        10: ForwardsUOffset<Vector<'_, ForwardsUOffset<Operator<'_>>>>,
    }
);
table!(
    /// schema.fbs `Tensor`.
    Tensor {
        4: ForwardsUOffset<Vector<'_, i32>>, 6: i8, 8: u32, 10: ForwardsUOffset<&str>,
        12: ForwardsUOffset<QuantizationParameters<'_>>, 14: bool,
    }
);
table!(
    /// schema.fbs `QuantizationParameters`.
    QuantizationParameters {
        8: ForwardsUOffset<Vector<'_, f32>>, 10: ForwardsUOffset<Vector<'_, i64>>, 12: u8, 16: i32,
    }
);
table!(
    /// schema.fbs `Buffer`.
    Buffer { 4: ForwardsUOffset<Vector<'_, u8>>, 6: u64, 8: u64 }
);
table!(
    /// schema.fbs `OperatorCode`.
    OperatorCode { 4: i8, 6: ForwardsUOffset<&str>, 8: i32, 10: i32 }
);
table!(
    /// schema.fbs `Operator`.
    Operator {
        4: u32, 6: ForwardsUOffset<Vector<'_, i32>>, 8: ForwardsUOffset<Vector<'_, i32>>,
        14: ForwardsUOffset<Vector<'_, u8>>,
    }
);
table!(
    /// schema.fbs `FullyConnectedOptions`.
    FullyConnectedOptions { 4: i8, 6: i8, 8: bool, 10: bool, 12: i8 }
);
table!(
    /// schema.fbs `SoftmaxOptions`.
    SoftmaxOptions { 4: f32 }
);
table!(
    /// schema.fbs `Metadata`.
    Metadata { 4: ForwardsUOffset<&str>, 6: u32 }
);

impl ExtraVerify for Model<'_> {}
impl ExtraVerify for SubGraph<'_> {}
impl ExtraVerify for Tensor<'_> {}
impl ExtraVerify for QuantizationParameters<'_> {}
impl ExtraVerify for Buffer<'_> {}
impl ExtraVerify for OperatorCode<'_> {}
impl ExtraVerify for FullyConnectedOptions<'_> {}
impl ExtraVerify for SoftmaxOptions<'_> {}
impl ExtraVerify for Metadata<'_> {}
impl ExtraVerify for Operator<'_> {
    fn extra<'v, 'o, 'b>(
        t: TableVerifier<'v, 'o, 'b>,
    ) -> Result<TableVerifier<'v, 'o, 'b>, InvalidFlatbuffer> {
        t.visit_union::<u8, _>("builtin_options_type", 10, "builtin_options", 12, false, |tag, v, pos| {
            match tag {
                options::FULLY_CONNECTED => v.verify_union_variant::<ForwardsUOffset<FullyConnectedOptions>>(
                    "FullyConnectedOptions",
                    pos,
                ),
                options::SOFTMAX => {
                    v.verify_union_variant::<ForwardsUOffset<SoftmaxOptions>>("SoftmaxOptions", pos)
                }
                // Other options are never read.
                _ => Ok(()),
            }
        })
    }
}

/// Reads a field the verifier checked as `T`.
macro_rules! field {
    ($self:ident, $ty:ty, $slot:literal) => {
        // SAFETY: `verify` checked this slot as `$ty` (the table! list above names the same
        // slot and type), so following it stays inside the buffer.
        unsafe { $self.0.get::<$ty>($slot, None) }
    };
}

impl<'a> Model<'a> {
    /// Schema version (3 for every current TFLite file).
    pub fn version(&self) -> u32 {
        field!(self, u32, 4).unwrap_or(0)
    }
    /// Operator codes, indexed by `Operator::opcode_index`.
    pub fn operator_codes(&self) -> Option<Vector<'a, ForwardsUOffset<OperatorCode<'a>>>> {
        field!(self, ForwardsUOffset<Vector<'a, ForwardsUOffset<OperatorCode<'a>>>>, 6)
    }
    /// Subgraphs; the first is the model.
    pub fn subgraphs(&self) -> Option<Vector<'a, ForwardsUOffset<SubGraph<'a>>>> {
        field!(self, ForwardsUOffset<Vector<'a, ForwardsUOffset<SubGraph<'a>>>>, 8)
    }
    /// Buffers, indexed by `Tensor::buffer` (0 is the empty buffer).
    pub fn buffers(&self) -> Option<Vector<'a, ForwardsUOffset<Buffer<'a>>>> {
        field!(self, ForwardsUOffset<Vector<'a, ForwardsUOffset<Buffer<'a>>>>, 12)
    }
    /// Named metadata buffers.
    pub fn metadata(&self) -> Option<Vector<'a, ForwardsUOffset<Metadata<'a>>>> {
        field!(self, ForwardsUOffset<Vector<'a, ForwardsUOffset<Metadata<'a>>>>, 16)
    }
}

impl<'a> SubGraph<'a> {
    /// Tensors, indexed by operator inputs and outputs.
    pub fn tensors(&self) -> Option<Vector<'a, ForwardsUOffset<Tensor<'a>>>> {
        field!(self, ForwardsUOffset<Vector<'a, ForwardsUOffset<Tensor<'a>>>>, 4)
    }
    /// The graph's input tensors.
    pub fn inputs(&self) -> Option<Vector<'a, i32>> {
        field!(self, ForwardsUOffset<Vector<'a, i32>>, 6)
    }
    /// The graph's output tensors.
    pub fn outputs(&self) -> Option<Vector<'a, i32>> {
        field!(self, ForwardsUOffset<Vector<'a, i32>>, 8)
    }
    /// Operators in execution order.
    pub fn operators(&self) -> Option<Vector<'a, ForwardsUOffset<Operator<'a>>>> {
        field!(self, ForwardsUOffset<Vector<'a, ForwardsUOffset<Operator<'a>>>>, 10)
    }
}

impl<'a> Tensor<'a> {
    /// The shape.
    pub fn shape(&self) -> Option<Vector<'a, i32>> {
        field!(self, ForwardsUOffset<Vector<'a, i32>>, 4)
    }
    /// The element type (a `tensor_type` constant).
    pub fn tensor_type(&self) -> i8 {
        field!(self, i8, 6).unwrap_or(tensor_type::FLOAT32)
    }
    /// Index of the buffer with the constant data (0: none).
    pub fn buffer(&self) -> u32 {
        field!(self, u32, 8).unwrap_or(0)
    }
    /// The name.
    pub fn name(&self) -> &'a str {
        field!(self, ForwardsUOffset<&'a str>, 10).unwrap_or("")
    }
    /// Quantization parameters.
    pub fn quantization(&self) -> Option<QuantizationParameters<'a>> {
        field!(self, ForwardsUOffset<QuantizationParameters<'a>>, 12)
    }
    /// Whether the tensor is a variable.
    pub fn is_variable(&self) -> bool {
        field!(self, bool, 14).unwrap_or(false)
    }
    /// Whether the tensor is sparse (slot 16 present; sparse tensors are refused, never read).
    pub fn is_sparse(&self) -> bool {
        self.0.vtable().get(16) != 0
    }
}

impl<'a> QuantizationParameters<'a> {
    /// Scales (one, or one per channel).
    pub fn scale(&self) -> Option<Vector<'a, f32>> {
        field!(self, ForwardsUOffset<Vector<'a, f32>>, 8)
    }
    /// Zero points.
    pub fn zero_point(&self) -> Option<Vector<'a, i64>> {
        field!(self, ForwardsUOffset<Vector<'a, i64>>, 10)
    }
    /// The `details` union's tag (0: none; custom quantization otherwise).
    pub fn details_type(&self) -> u8 {
        field!(self, u8, 12).unwrap_or(0)
    }
    /// The dimension the per-channel scales run along.
    pub fn quantized_dimension(&self) -> i32 {
        field!(self, i32, 16).unwrap_or(0)
    }
}

impl<'a> Buffer<'a> {
    /// The bytes in the flatbuffer.
    pub fn data(&self) -> &'a [u8] {
        field!(self, ForwardsUOffset<Vector<'a, u8>>, 4).map_or(&[], |v| v.bytes())
    }
    /// Offset of data outside the flatbuffer (files over 2 GB); 0 when inside.
    pub fn offset(&self) -> u64 {
        field!(self, u64, 6).unwrap_or(0)
    }
}

impl<'a> OperatorCode<'a> {
    /// The builtin operator, as TFLite's `GetBuiltinCode`: the larger of the deprecated
    /// byte field and the int32 field.
    pub fn builtin_code(&self) -> i32 {
        let old = field!(self, i8, 4).unwrap_or(0) as i32;
        old.max(field!(self, i32, 10).unwrap_or(0))
    }
    /// The custom operator's name, for CUSTOM.
    pub fn custom_code(&self) -> Option<&'a str> {
        field!(self, ForwardsUOffset<&'a str>, 6)
    }
    /// The operator version.
    pub fn version(&self) -> i32 {
        field!(self, i32, 8).unwrap_or(1)
    }
}

impl<'a> Operator<'a> {
    /// Index into the model's operator codes.
    pub fn opcode_index(&self) -> u32 {
        field!(self, u32, 4).unwrap_or(0)
    }
    /// Input tensors (-1: an omitted optional input).
    pub fn inputs(&self) -> Option<Vector<'a, i32>> {
        field!(self, ForwardsUOffset<Vector<'a, i32>>, 6)
    }
    /// Output tensors.
    pub fn outputs(&self) -> Option<Vector<'a, i32>> {
        field!(self, ForwardsUOffset<Vector<'a, i32>>, 8)
    }
    /// The options union's tag.
    pub fn builtin_options_type(&self) -> u8 {
        field!(self, u8, 10).unwrap_or(0)
    }
    /// FULLY_CONNECTED's options, when the union holds them.
    pub fn fully_connected_options(&self) -> Option<FullyConnectedOptions<'a>> {
        if self.builtin_options_type() != options::FULLY_CONNECTED {
            return None;
        }
        field!(self, ForwardsUOffset<FullyConnectedOptions<'a>>, 12)
    }
    /// SOFTMAX's options, when the union holds them.
    pub fn softmax_options(&self) -> Option<SoftmaxOptions<'a>> {
        if self.builtin_options_type() != options::SOFTMAX {
            return None;
        }
        field!(self, ForwardsUOffset<SoftmaxOptions<'a>>, 12)
    }
}

impl FullyConnectedOptions<'_> {
    /// The fused activation (an `activation` constant).
    pub fn fused_activation_function(&self) -> i8 {
        field!(self, i8, 4).unwrap_or(activation::NONE)
    }
    /// Weights format (0: DEFAULT; 1: SHUFFLED4x16INT8).
    pub fn weights_format(&self) -> i8 {
        field!(self, i8, 6).unwrap_or(0)
    }
}

impl SoftmaxOptions<'_> {
    /// The softmax's `beta` (inputs are multiplied by it).
    pub fn beta(&self) -> f32 {
        field!(self, f32, 4).unwrap_or(0.0)
    }
}

impl<'a> Metadata<'a> {
    /// The name.
    pub fn name(&self) -> &'a str {
        field!(self, ForwardsUOffset<&'a str>, 4).unwrap_or("")
    }
    /// The buffer holding the value.
    pub fn buffer(&self) -> u32 {
        field!(self, u32, 6).unwrap_or(0)
    }
}
