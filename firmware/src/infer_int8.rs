//! The default build: the int8 model classifies the embedded MNIST test images, with the
//! SMLAD kernel and with core's portable kernel, checked against each other and against the
//! host's outputs, and timed.

use cortex_m_semihosting::hprintln;
use mlp::int8::{self, layout, Int8Kernels, PortableInt8};
use mlp::Shape;

use crate::clock::Clock;
use crate::int8_model::{macs, Layers};
use crate::kernel::{Fast, NAME};
use crate::{buffer, images, model, Fail, Ratio};

const ACT_LEN: usize = layout::act_len(&model::LAYERS, 1);
const ACC_LEN: usize = layout::acc_len(&model::LAYERS, 1);
/// Repetitions of the timed dense product (per kernel).
const PRODUCT_RUNS: u64 = 4;

pub fn run(clock: &Clock) -> Result<(), Fail> {
    crate::check_core()?;
    let mut layers = Layers::new();
    crate::int8_model::layers(&mut layers)?;
    let table = model::INPUT_TABLE.as_ref().ok_or(Fail::Check(
        "the model has a per-feature input transform (no u8 input table); export an MNIST model",
    ))?;
    let xq = buffer!(i8; model::INPUT).ok_or(Fail::Check("input buffer taken twice"))?;
    let act = buffer!(i8; ACT_LEN).ok_or(Fail::Check("activation buffer taken twice"))?;
    let acc = buffer!(i32; ACC_LEN).ok_or(Fail::Check("accumulator buffer taken twice"))?;
    let n = images::TEST_LABELS.len();
    let macs = macs(&layers);
    hprintln!(
        "mlp on {}: int8 {}-layer model ({} inputs, {} outputs, {} MACs per image), {} MNIST test images",
        crate::CORE,
        layers.len(),
        model::INPUT,
        model::OUTPUT,
        macs,
        n
    );
    hprintln!("costs in {}", clock.describe());
    match clock.check() {
        Ok((run, measured)) => hprintln!("clock check: a loop of {} instructions measured {}", run, measured),
        Err((run, measured)) => {
            hprintln!("clock check: a loop of {} instructions measured {}", run, measured);
            return Err(Fail::Check("SysTick does not count instructions here: run under qemu-run.sh"));
        }
    }

    let (mut correct, mut host_same, mut kernels_same) = (0usize, 0usize, 0usize);
    let (mut cost_dsp, mut cost_portable) = (0u64, 0u64);
    let z = model::INPUT_ZERO_POINT;
    for (i, (image, &label)) in images::TEST_IMAGES.iter().zip(&images::TEST_LABELS).enumerate() {
        let t = clock.now();
        for (q, &p) in xq.iter_mut().zip(image.iter()) {
            *q = table[p as usize];
        }
        let out = int8::forward_layers(&Fast, &layers, z, &xq[..], 1, &mut act[..], &mut acc[..])?;
        cost_dsp += clock.since(t);
        let mut logits = [0i8; model::OUTPUT];
        logits.copy_from_slice(out);

        let t = clock.now();
        let out = int8::forward_layers(&PortableInt8, &layers, z, &xq[..], 1, &mut act[..], &mut acc[..])?;
        cost_portable += clock.since(t);
        kernels_same += (out == logits) as usize;
        host_same += (images::HOST_OUTPUTS[i] == logits) as usize;
        let predicted = int8::argmax(&logits);
        correct += (predicted == label as usize) as usize;
        crate::out::s("image ");
        crate::out::int(i as i32);
        crate::out::s(": label ");
        crate::out::int(label as i32);
        crate::out::s(" predicted ");
        crate::out::int(predicted as i32);
        crate::out::s(" logits ");
        crate::out::row(&logits);
        crate::out::s("\n");
    }
    hprintln!("correct {} of {}", correct, n);
    hprintln!("bit-identical to the host's int8 outputs: {} of {}", host_same, n);
    hprintln!("{} and portable kernels identical: {} of {}", NAME, kernels_same, n);
    let per = |c: u64| c / n.max(1) as u64;
    hprintln!(
        "per inference (input quantization + all layers): {} {} {unit}, portable {} {unit} ({}x)",
        NAME,
        per(cost_dsp),
        per(cost_portable),
        Ratio(cost_portable, cost_dsp.max(1)),
        unit = clock.unit()
    );
    hprintln!(
        "per MAC over a whole inference: {} {}, portable {} {}",
        NAME,
        Ratio(per(cost_dsp), macs),
        Ratio(per(cost_portable), macs),
        clock.unit()
    );

    hprintln!(
        "stack high-water mark after inference: {} bytes (the kernel self-test below uses more)",
        crate::stack::high_water()
    );
    match crate::kernel::self_test(&mut mlp::Rng::new(1)) {
        Ok(k) => hprintln!("{} kernel = portable kernel on {} random shapes", NAME, k),
        Err(s) if s.batch == 0 => {
            hprintln!(
                "the requantization's fast path differs from core's: sum {}, shift {}",
                s.inputs as i32,
                s.outputs as i32
            );
            return Err(Fail::Check("the requantization is not bit-identical to core's"));
        }
        Err(s) => {
            hprintln!(
                "{} kernel differs from the portable kernel: batch {}, {} inputs, {} outputs",
                NAME,
                s.batch,
                s.inputs,
                s.outputs
            );
            return Err(Fail::Check("the fast kernel is not bit-identical to the portable one"));
        }
    }

    // The dense product alone, on the first layer (the bulk of the MACs), with no blank input
    // to skip: every value differs from the zero point (j % 250 + 1 is never 0 mod 256).
    let l0 = &layers[0];
    for (j, q) in xq.iter_mut().enumerate() {
        *q = (z + 1 + (j % 250) as i32) as i8;
    }
    let shape = Shape { batch: 1, inputs: l0.inputs(), outputs: l0.outputs() };
    let product_macs = (shape.inputs * shape.outputs) as u64 * PRODUCT_RUNS;
    let time = |k: &dyn Int8Kernels, acc: &mut [i32]| {
        let t = clock.now();
        for _ in 0..PRODUCT_RUNS {
            k.dense_i8(shape, &xq[..], -z, l0.weights(), &mut acc[..shape.outputs]);
        }
        clock.since(t)
    };
    let portable = time(&PortableInt8, &mut acc[..]);
    let smlad = time(&Fast, &mut acc[..]);
    hprintln!(
        "dense product {}x{}, no blank input (x{}): portable {} {unit}/MAC, {} {} {unit}/MAC",
        shape.inputs,
        shape.outputs,
        PRODUCT_RUNS,
        Ratio(portable, product_macs),
        NAME,
        Ratio(smlad, product_macs),
        unit = clock.unit()
    );

    if correct * 100 < n * 97 {
        hprintln!("accuracy below 97% on the embedded images");
    }
    if host_same != n {
        return Err(Fail::Check("the device's int8 outputs differ from the host's"));
    }
    if kernels_same != n {
        return Err(Fail::Check("the fast and portable kernels disagree"));
    }
    Ok(())
}
