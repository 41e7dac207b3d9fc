//! Fast in-place CPU kernels for the element-wise parts of the network.
//!
//! Profiling one base encoder layer showed candle's softmax (scalar `exp` per element) and
//! `gelu_erf` (scalar `erf`) costing more than the matmuls around them. These kernels use a
//! branch-free polynomial `exp` (relative error < 2e-7) and the Abramowitz-Stegun 7.1.26
//! `erf` (absolute error < 1.5e-7), written as plain loops over fixed-width lanes so LLVM
//! vectorises them (SSE2/AVX natively, simd128 on wasm32 with `+simd128`). They run in
//! place on freshly produced matmul outputs, which also saves an allocation per op.
//!
//! Only call these on tensors nobody else holds: they overwrite the storage.

use candle_core::{bail, CpuStorage, InplaceOp1, InplaceOp2, Layout, Result, Tensor};

const LANES: usize = 8;

/// `e^x` for f32 via `2^n * 2^f`, with `n` rounded by the 1.5 * 2^23 trick (no SSE4.1
/// rounding instruction or float-to-int conversion needed) and `2^f` by a degree-6 Taylor polynomial on [-0.5, 0.5].
/// Inputs below -87.3 (including -inf from masks) give exactly 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4; // 0.693359375, few mantissa bits: n * LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    // Compare-and-select (not f32::max/min, which wasm has no vector instruction for and
    // LLVM then scalarises); NaN fails both tests and maps to -87, keeping n + 127 below
    // within the exponent range.
    let xc = if x > -87.0 { x } else { -87.0 };
    let xc = if xc < 88.0 { xc } else { 88.0 };
    let t = xc * LOG2E;
    let n = (t + MAGIC) - MAGIC;
    // Cody-Waite reduction: f = x - n ln2 with ln2 split in two so the product is exact;
    // reducing t - n in base 2 instead loses ~5e-6 relative accuracy at |x| ~ 80.
    let f = xc - n * LN2_HI - n * LN2_LO; // |f| <= ln2 / 2
    let p = 1.0 + f * (1.0 + f * (0.5 + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    // 2^n built from the bits of t + MAGIC, whose low mantissa bits hold n: integer ops
    // only, so the loop vectorises on SSE2 and wasm simd128 alike (a float-to-int conversion
    // blocked vectorisation on one or the other). n + 127 lies in [1, 254] after the clamp.
    let scale = f32::from_bits((t + MAGIC).to_bits().wrapping_add(127) << 23);
    if x < -87.3 {
        0.0
    } else {
        p * scale
    }
}

/// `erf(x)` by Abramowitz and Stegun 7.1.26.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = if x < 0.0 { -x } else { x };
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// Exact-form GELU `0.5 x (1 + erf(x / sqrt 2))`, as in Whisper's `nn.GELU()`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU over a slice in place.
pub fn gelu_slice(xs: &mut [f32]) {
    xs.iter_mut().for_each(|v| *v = gelu(*v));
}

fn max_of(row: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            m[i] = if c[i] > m[i] { c[i] } else { m[i] };
        }
    }
    let mut best = rest.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    for v in m {
        best = best.max(v);
    }
    best
}

/// Softmax of one row in place.
pub fn softmax_row(row: &mut [f32]) {
    let max = max_of(row);
    if max == f32::NEG_INFINITY {
        row.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    // Separate simple passes vectorise; a row (1500 floats) stays in L1 between them.
    row.iter_mut().for_each(|v| *v = exp(*v - max));
    let mut acc = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let mut sum: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    sum += acc.iter().sum::<f32>();
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

fn contiguous_f32<'a>(s: &'a mut CpuStorage, l: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else { bail!("{op}: tensor must be contiguous") };
    match s {
        CpuStorage::F32(v) => Ok(&mut v[a..b]),
        _ => bail!("{op}: only f32 is supported"),
    }
}

fn bias_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else { bail!("{op}: bias must be contiguous") };
    match s {
        CpuStorage::F32(v) => Ok(&v[a..b]),
        _ => bail!("{op}: only f32 is supported"),
    }
}

struct SoftmaxLastDim;

impl InplaceOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "lw-softmax"
    }
    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let dim = *l.dims().last().unwrap_or(&1);
        let data = contiguous_f32(s, l, "softmax")?;
        for row in data.chunks_exact_mut(dim.max(1)) {
            softmax_row(row);
        }
        Ok(())
    }
}

struct GeluInPlace;

impl InplaceOp1 for GeluInPlace {
    fn name(&self) -> &'static str {
        "lw-gelu"
    }
    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        gelu_slice(contiguous_f32(s, l, "gelu")?);
        Ok(())
    }
}

struct AddBias {
    gelu: bool,
    /// Bias per row (channel-major conv outputs) instead of per column.
    per_row: bool,
}

impl InplaceOp2 for AddBias {
    fn name(&self) -> &'static str {
        if self.gelu {
            "lw-bias-gelu"
        } else {
            "lw-bias"
        }
    }
    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let bias = bias_slice(s2, l2, self.name())?;
        let data = contiguous_f32(s1, l1, self.name())?;
        if bias.is_empty() || data.len() % bias.len() != 0 {
            bail!("{}: bias length {} does not divide {}", self.name(), bias.len(), data.len());
        }
        if self.per_row {
            let len = data.len() / bias.len();
            for (row, &b) in data.chunks_exact_mut(len).zip(bias) {
                if self.gelu {
                    row.iter_mut().for_each(|v| *v = gelu(*v + b));
                } else {
                    row.iter_mut().for_each(|v| *v += b);
                }
            }
            return Ok(());
        }
        for row in data.chunks_exact_mut(bias.len()) {
            if self.gelu {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v = gelu(*v + b);
                }
            } else {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
        }
        Ok(())
    }
}

/// Softmax over the last dimension, in place (the tensor must be contiguous and unshared).
pub fn softmax_last_dim_(x: &Tensor) -> Result<()> {
    x.inplace_op1(&SoftmaxLastDim)
}

/// `x = gelu(x)`, in place.
pub fn gelu_inplace_(x: &Tensor) -> Result<()> {
    x.inplace_op1(&GeluInPlace)
}

/// `x += bias` over the last dimension, in place.
pub fn add_bias_(x: &Tensor, bias: &Tensor) -> Result<()> {
    x.inplace_op2(bias, &AddBias { gelu: false, per_row: false })
}

/// `x = gelu(x + bias)` over the last dimension, in place.
pub fn add_bias_gelu_(x: &Tensor, bias: &Tensor) -> Result<()> {
    x.inplace_op2(bias, &AddBias { gelu: true, per_row: false })
}

/// `x = gelu(x + bias[c])` for a `(1, channels, length)` tensor, in place (conv outputs).
pub fn add_channel_bias_gelu_(x: &Tensor, bias: &Tensor) -> Result<()> {
    x.inplace_op2(bias, &AddBias { gelu: true, per_row: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn gelu_matches_erf_form() {
        for i in -800..800 {
            let x = i as f32 / 100.0;
            let reference = 0.5 * x as f64 * (1.0 + libm_erf(x as f64 / std::f64::consts::SQRT_2));
            assert!((gelu(x) as f64 - reference).abs() < 2e-6, "x={x}");
        }
    }

    // Reference erf from the series/continued fraction, good to 1e-12 on [-6, 6].
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // Continued fraction for erfc.
            let a = if x < 0.0 { -x } else { x };
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            return x.signum() * (1.0 - erfc);
        }
        let mut sum = 0.0;
        let mut term = x;
        let mut k = 0;
        while term.abs() > 1e-17 || k < 5 {
            sum += term / (2 * k + 1) as f64;
            k += 1;
            term *= -x * x / k as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    #[test]
    fn inplace_ops_match_candle() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (3, 37), &dev).unwrap();
        let reference = candle_nn::ops::softmax_last_dim(&x).unwrap();
        let y = x.copy().unwrap();
        softmax_last_dim_(&y).unwrap();
        let d = (y - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-6, "{d}");
        let b = Tensor::randn(0f32, 1.0, 37, &dev).unwrap();
        let reference = x.broadcast_add(&b).unwrap().gelu_erf().unwrap();
        let y = x.copy().unwrap();
        add_bias_gelu_(&y, &b).unwrap();
        let d = (y - reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
    }
}
