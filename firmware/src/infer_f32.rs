//! `--features f32`: the f32 model classifies the embedded test images with core's portable
//! f32 kernels (hardware single-precision floats on the Cortex-M4F).

use cortex_m_semihosting::hprintln;
use mlp::{layout, Model, Portable, Topology};

use crate::clock::Clock;
use crate::{buffer, images, model, Fail, Ratio};

const WS_LEN: usize = layout::infer_workspace_len(&model::LAYERS, 1);

pub fn run(clock: &Clock) -> Result<(), Fail> {
    let topology = Topology::new(model::INPUT, &model::LAYERS)?;
    let net = Model::new(&topology, &model::PARAMS, &model::RUNNING)?;
    let x = buffer!(f32; model::INPUT).ok_or(Fail::Check("input buffer taken twice"))?;
    let ws = buffer!(f32; WS_LEN).ok_or(Fail::Check("workspace taken twice"))?;
    let n = images::TEST_LABELS.len();
    let macs: u64 = (0..topology.layers().len())
        .map(|i| (topology.fan_in(i) * topology.layers()[i].outputs) as u64)
        .sum();
    hprintln!(
        "mlp on Cortex-M4F: f32 {}-layer model ({} parameters, {} MACs per image), {} MNIST test images",
        topology.layers().len(),
        topology.param_len(),
        macs,
        n
    );
    hprintln!("costs in {}", clock.describe());
    let (mut correct, mut host_same, mut cost) = (0usize, 0usize, 0u64);
    for (i, (image, &label)) in images::TEST_IMAGES.iter().zip(&images::TEST_LABELS).enumerate() {
        let t = clock.now();
        for (v, &p) in x.iter_mut().zip(image.iter()) {
            *v = p as f32 * model::INPUT_SCALE + model::INPUT_OFFSET;
        }
        let predicted = net.predict(&Portable, &x[..], &mut ws[..])?;
        cost += clock.since(t);
        correct += (predicted == label as usize) as usize;
        host_same += (predicted == images::HOST_PREDICTIONS[i] as usize) as usize;
        hprintln!("image {}: label {} predicted {}", i, label, predicted);
    }
    let per = cost / n.max(1) as u64;
    hprintln!("correct {} of {}", correct, n);
    hprintln!("same prediction as the host's f32 model: {} of {}", host_same, n);
    hprintln!(
        "per inference (input transform + all layers): {} {unit}, {} {unit}/MAC",
        per,
        Ratio(per, macs),
        unit = clock.unit()
    );
    if host_same != n {
        // Float sums in another order can flip a near tie; say so rather than hide it.
        hprintln!("note: f32 results differ from the host's on {} image(s)", n - host_same);
    }
    if correct * 100 < n * 97 {
        return Err(Fail::Check("f32 accuracy below 97% on the embedded images"));
    }
    Ok(())
}
