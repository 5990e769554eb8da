//! AMX-INT8 (`tdpbusd`) for the packed path, in inline assembly (the AMX intrinsics are not
//! stable Rust). A tile product multiplies a 16 × 64 tile of biased inputs `u` (16 samples,
//! 64 inputs, u8) by a 16 × 64 tile of packed weights (16 input quads × 16 outputs × 4
//! signed bytes, exactly the layout of [`super::avx512::Packed`]) into 16 × 16 i32 sums:
//! `C[m][n] += Σ_k Σ_i u[m][4k + i] · W[k][4n + i]`, the same wrapping sums as `vpdpbusd`.
//!
//! Linux grants a process the AMX tile data state only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); [`Amx::detect`] checks CPUID
//! and makes that request once. Each use configures the tiles (`ldtilecfg`) and releases them
//! (`tilerelease`) on the same thread, with no other tile user in between.

use std::arch::asm;

use super::Line;
pub(super) use crate::isa::Amx;

/// The tile configuration (palette 1): all 8 tiles 16 rows × 64 bytes.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// Tiles configured on this thread for the lifetime of the value; released on drop. Not
/// `Send`: the configuration belongs to the thread.
pub(super) struct Tiles(std::marker::PhantomData<*const ()>);

impl Tiles {
    /// Configures tmm0..tmm7 as 16 × 64-byte tiles: tmm0..3 accumulators, tmm4..5 inputs,
    /// tmm6..7 weights.
    pub(super) fn configure(_: Amx) -> Tiles {
        let mut cfg =
            TileConfig { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
        cfg.colsb[..8].fill(64);
        cfg.rows[..8].fill(16);
        // SAFETY: the `Amx` token proves AMX-TILE and the OS permission; `cfg` is a valid
        // 64-byte palette-1 configuration that ldtilecfg only reads.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly, preserves_flags)) };
        Tiles(std::marker::PhantomData)
    }

    /// `C[g·2 + j][m][n] = Σ over the listed 64-input chunks `kc` of `u` rows `16g + m` times
    /// the weights of output vector `j` (`b[j]`: its first line, `stride[j]` lines between
    /// quads), for `g, j < 2` (only `j = 0` when `b[1]` is `None`).
    ///
    /// `u`: 32 rows of `ul` lines; `wq`: the packed weights.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn product_32x32(
        &self,
        u: &[Line],
        ul: usize,
        wq: &[Line],
        b: [Option<(usize, usize)>; 2],
        kcs: &[u32],
        c: &mut [[i32; 256]; 4],
    ) {
        assert!(u.len() >= 32 * ul);
        let (b0, s0) = b[0].expect("at least one output vector");
        let sa = ul * 64;
        let up = u.as_ptr();
        let wp = wq.as_ptr();
        for &kc in kcs {
            let kc = kc as usize;
            assert!(kc < ul);
            // Weight rows 16kc .. 16kc + 16 of a vector: lines base + (16kc + i)·stride.
            let last = |(base, stride): (usize, usize)| base + (16 * kc + 15) * stride;
            assert!(last((b0, s0)) < wq.len());
            // SAFETY: input tiles read rows 0..16 and 16..32 of `u` (64 bytes at line
            // r·ul + kc, r < 32; u.len() >= 32·ul, kc < ul); weight tiles read 16 lines
            // base + (16kc + i)·stride, i < 16, the last of which is in `wq` (asserted).
            // Tiles are configured (`self` exists only after ldtilecfg on this thread).
            unsafe {
                let a0 = up.add(kc);
                let a1 = up.add(16 * ul + kc);
                let w0 = wp.add(b0 + 16 * kc * s0);
                match b[1] {
                    Some((b1, s1)) => {
                        assert!(last((b1, s1)) < wq.len());
                        let w1 = wp.add(b1 + 16 * kc * s1);
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{w0} + {sb0}*1]",
                            "tileloadd tmm7, [{w1} + {sb1}*1]",
                            "tdpbusd tmm0, tmm4, tmm6",
                            "tdpbusd tmm1, tmm4, tmm7",
                            "tdpbusd tmm2, tmm5, tmm6",
                            "tdpbusd tmm3, tmm5, tmm7",
                            a0 = in(reg) a0,
                            a1 = in(reg) a1,
                            w0 = in(reg) w0,
                            w1 = in(reg) w1,
                            sa = in(reg) sa,
                            sb0 = in(reg) s0 * 64,
                            sb1 = in(reg) s1 * 64,
                            options(nostack, readonly, preserves_flags)
                        );
                    }
                    None => {
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{w0} + {sb0}*1]",
                            "tdpbusd tmm0, tmm4, tmm6",
                            "tdpbusd tmm2, tmm5, tmm6",
                            a0 = in(reg) a0,
                            a1 = in(reg) a1,
                            w0 = in(reg) w0,
                            sa = in(reg) sa,
                            sb0 = in(reg) s0 * 64,
                            options(nostack, readonly, preserves_flags)
                        );
                    }
                }
            }
        }
        let [c0, c1, c2, c3] = c;
        // SAFETY: each store writes 16 rows of 64 bytes at a 64-byte stride: exactly one
        // [i32; 256] (1 KB). Tiles are configured.
        unsafe {
            asm!(
                "tilestored [{c0} + {s}*1], tmm0",
                "tilestored [{c1} + {s}*1], tmm1",
                "tilestored [{c2} + {s}*1], tmm2",
                "tilestored [{c3} + {s}*1], tmm3",
                c0 = in(reg) c0.as_mut_ptr(),
                c1 = in(reg) c1.as_mut_ptr(),
                c2 = in(reg) c2.as_mut_ptr(),
                c3 = in(reg) c3.as_mut_ptr(),
                s = in(reg) 64usize,
                options(nostack, preserves_flags)
            );
        }
    }

    /// Zeroes the accumulator tiles tmm0..tmm3.
    pub(super) fn zero(&self) {
        // SAFETY: tiles are configured (`self` exists only after ldtilecfg on this thread);
        // tilezero touches no memory.
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem, preserves_flags)
            )
        };
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: releases the tile state configured by `configure` on this thread; touches
        // no memory.
        unsafe { asm!("tilerelease", options(nostack, nomem, preserves_flags)) };
    }
}
