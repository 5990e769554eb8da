//! `--features lean`: only what an application needs: the int8 model through the SMLAD
//! kernel, one line per image, the count correct, and a check against the host's outputs; no
//! `core::fmt`, no self-test, no portable kernel, no timing. Its size is the firmware cost of
//! the model beyond its arrays (README.md, "Cortex-M").

use mlp::int8::{self, layout};

use crate::int8_model::Layers;
use crate::kernel::Fast;
use crate::{buffer, images, model, out, Fail};

/// The device interrupt vectors: one (cortex-m-rt requires at least one), to the default
/// handler, instead of the 240 (960 bytes) cortex-m-rt provides for an unknown device. The
/// lean build enables no interrupt; an application adds its part's vectors (its PAC does).
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
#[used]
pub static __INTERRUPTS: [unsafe extern "C" fn(); 1] = [DefaultHandler];

extern "C" {
    /// cortex-m-rt's handler for unexpected interrupts.
    fn DefaultHandler();
}

const ACT_LEN: usize = layout::act_len(&model::LAYERS, 1);
const ACC_LEN: usize = layout::acc_len(&model::LAYERS, 1);

pub fn run() -> Result<(), Fail> {
    let mut layers = Layers::new();
    crate::int8_model::layers(&mut layers)?;
    let table = model::INPUT_TABLE.as_ref().ok_or(Fail::Check("the model has no u8 input table"))?;
    let xq = buffer!(i8; model::INPUT).ok_or(Fail::Check("buffer taken twice"))?;
    let act = buffer!(i8; ACT_LEN).ok_or(Fail::Check("buffer taken twice"))?;
    let acc = buffer!(i32; ACC_LEN).ok_or(Fail::Check("buffer taken twice"))?;
    let (mut correct, mut host_same) = (0, 0);
    for (i, (image, &label)) in images::TEST_IMAGES.iter().zip(&images::TEST_LABELS).enumerate() {
        for (q, &p) in xq.iter_mut().zip(image.iter()) {
            *q = table[p as usize];
        }
        let logits = int8::forward_layers(
            &Fast,
            &layers,
            model::INPUT_ZERO_POINT,
            &xq[..],
            1,
            &mut act[..],
            &mut acc[..],
        )
        .map_err(crate::int8_model::core_error)?;
        let predicted = int8::argmax(logits);
        correct += (predicted == label as usize) as usize;
        host_same += logits.iter().eq(&images::HOST_OUTPUTS[i]) as usize;
        out::s("image ");
        out::int(i as i32);
        out::s(": label ");
        out::int(label as i32);
        out::s(" predicted ");
        out::int(predicted as i32);
        out::s(" logits ");
        out::row(logits);
        out::s("\n");
    }
    let n = images::TEST_LABELS.len();
    out::s("correct ");
    out::int(correct as i32);
    out::s(" of ");
    out::int(n as i32);
    out::s("\nbit-identical to the host's int8 outputs: ");
    out::int(host_same as i32);
    out::s(" of ");
    out::int(n as i32);
    out::s("\n");
    if host_same != n {
        return Err(Fail::Check("the device's int8 outputs differ from the host's"));
    }
    Ok(())
}
