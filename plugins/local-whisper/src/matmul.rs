//! Single-threaded f32 matrix kernels for wasm32 `simd128`: an f16-weight matrix-vector
//! product (used by the decoder) and an experimental `C += A · Bᵀ` matmul (opt-in).
//!
//! candle's CPU matmul goes through the `gemm` crate, which is excellent natively (AVX2/FMA,
//! runtime-detected) but measured 11-15 GFLOPS in wasmtime for the encoder's shapes, and 3-8x
//! slower than native for some (e.g. `P·V` with 64 output columns). Every product in Whisper
//! can be written in the "NT" form `C[i][j] = Σ_p A[i][p] · B[j][p]` with both operands
//! contiguous along `p` (weights are stored `(out, in)`; keys are `(T, d)`; values are
//! transposed once per head), so one kernel shape suffices: 2 rows of A x 4 rows of B, eight
//! `f32x4` accumulators reduced horizontally at the end, which fits the 16 vector registers
//! Cranelift has on x86-64. The loops are blocked so a panel of B (64 rows x 256 floats,
//! 64 KB) stays in L2 while all rows of A stream past it.
//!
//! In the end this matmul measured no faster than `gemm` inside wasmtime (both 12-20 GFLOPS;
//! the encoder's 87 GFLOP per 30 s window is the wasm bottleneck either way), so it is off by
//! default (see [`own_kernels`]) and kept for experiments on other hosts.
//!
//! Also tried (2026-11-28, measured with `scribe bench local`, encoder time of one 30 s
//! window on a 2.45 GHz Zen 3): fused multiply-add through relaxed SIMD and a packed 6x8
//! broadcast kernel took 9.4 s against gemm's 7.0 s. Cranelift's code is the limit, not the
//! blocking: the generated loop keeps some accumulators in stack slots across the back edge,
//! broadcasts go through a general register (the load is not adjacent to its use, so it is
//! not sunk into `vbroadcastss`), and each `vfmadd213` overwrites a multiplicand, so one
//! register copy per FMA. About 10-12 GFLOPS is what either path reaches in wasmtime here.
//!
//! Off wasm the same code runs on a plain `[f32; 4]` lane type (used by the unit tests).

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Result, Tensor};

static OWN_KERNELS: AtomicBool = AtomicBool::new(false);

/// Whether the model's matrix products use these kernels instead of candle's matmul.
/// Default off on every target: natively `gemm` uses AVX2/FMA and is 3-10x faster; in
/// wasmtime the two measured within noise of each other end to end (candle slightly
/// ahead: RTF 0.68-0.75 vs 0.75-0.83 on a 13 s clip, alternating runs on a loaded machine).
/// A process-wide switch so benchmarks and tests can run either path in the same build.
/// [`matvec_f16`] is used regardless (it serves the f16 decoder weights).
pub fn own_kernels() -> bool {
    OWN_KERNELS.load(Ordering::Relaxed)
}

/// Select the kernel path for subsequent calls (see [`own_kernels`]).
pub fn set_own_kernels(on: bool) {
    OWN_KERNELS.store(on, Ordering::Relaxed)
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod lanes {
    use core::arch::wasm32::*;

    /// Four f32 lanes in a wasm `v128`.
    #[derive(Clone, Copy)]
    pub struct V(v128);

    #[inline(always)]
    pub fn zero() -> V {
        V(f32x4_splat(0.0))
    }
    /// Unaligned load of four floats.
    ///
    /// # Safety
    /// `p..p+4` must be readable.
    #[inline(always)]
    pub unsafe fn load(p: *const f32) -> V {
        V(v128_load(p as *const v128))
    }
    #[inline(always)]
    pub fn madd(acc: V, a: V, b: V) -> V {
        V(f32x4_add(acc.0, f32x4_mul(a.0, b.0)))
    }
    /// Eight f16 values (raw bits) widened to two f32 vectors; see [`super::f16_to_f32`].
    ///
    /// # Safety
    /// `p..p+8` must be readable.
    #[inline(always)]
    pub unsafe fn load_f16x8(p: *const u16) -> (V, V) {
        let h = v128_load(p as *const v128);
        let mask = i32x4_splat(0x8FFF_FFFFu32 as i32);
        let scale = f32x4_splat(f32::from_bits(0x7780_0000)); // 2^112
        let lo = v128_and(i32x4_shl(i32x4_extend_low_i16x8(h), 13), mask);
        let hi = v128_and(i32x4_shl(i32x4_extend_high_i16x8(h), 13), mask);
        (V(f32x4_mul(lo, scale)), V(f32x4_mul(hi, scale)))
    }
    #[inline(always)]
    pub fn add(a: V, b: V) -> V {
        V(f32x4_add(a.0, b.0))
    }
    #[inline(always)]
    pub fn hsum(x: V) -> f32 {
        let s = f32x4_add(x.0, i32x4_shuffle::<2, 3, 0, 1>(x.0, x.0));
        let s = f32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s));
        f32x4_extract_lane::<0>(s)
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod lanes {
    /// Four f32 lanes as a plain array (portable fallback with the same semantics).
    #[derive(Clone, Copy)]
    pub struct V([f32; 4]);

    #[inline(always)]
    pub fn zero() -> V {
        V([0.0; 4])
    }
    /// Unaligned load of four floats.
    ///
    /// # Safety
    /// `p..p+4` must be readable.
    #[inline(always)]
    pub unsafe fn load(p: *const f32) -> V {
        V([*p, *p.add(1), *p.add(2), *p.add(3)])
    }
    #[inline(always)]
    pub fn madd(acc: V, a: V, b: V) -> V {
        V([acc.0[0] + a.0[0] * b.0[0], acc.0[1] + a.0[1] * b.0[1], acc.0[2] + a.0[2] * b.0[2], acc.0[3] + a.0[3] * b.0[3]])
    }
    /// Eight f16 values (raw bits) widened to two f32 vectors; see [`super::f16_to_f32`].
    ///
    /// # Safety
    /// `p..p+8` must be readable.
    #[inline(always)]
    pub unsafe fn load_f16x8(p: *const u16) -> (V, V) {
        let f = |i: usize| super::f16_to_f32(*p.add(i));
        (V([f(0), f(1), f(2), f(3)]), V([f(4), f(5), f(6), f(7)]))
    }
    #[inline(always)]
    pub fn add(a: V, b: V) -> V {
        V([a.0[0] + b.0[0], a.0[1] + b.0[1], a.0[2] + b.0[2], a.0[3] + b.0[3]])
    }
    #[inline(always)]
    pub fn hsum(x: V) -> f32 {
        (x.0[0] + x.0[2]) + (x.0[1] + x.0[3])
    }
}

use lanes::{add, hsum, load, load_f16x8, madd, zero, V};

/// Exact f16 -> f32 conversion with integer ops only (vectorisable everywhere, no F16C):
/// sign-extend the 16 bits, shift the exponent and mantissa into f32 position, clear the
/// copies of the sign bit, and rescale by 2^112 to fix the exponent bias. Subnormal f16
/// values come out exact because the rescale happens in float arithmetic.
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let bits = ((h as i16 as i32) << 13) as u32 & 0x8FFF_FFFF;
    f32::from_bits(bits) * f32::from_bits(0x7780_0000)
}

/// `y[o] += Σ_i f16(w[o][i]) · x[i]` for a row-major `rows x cols` matrix of f16 bit patterns.
///
/// This is the decoder's per-token workload (one input row): memory-bound, so storing the
/// weights as the f16 they were shipped in halves the bytes read per token, and the
/// conversion is exact, so results match the f32 path up to summation order.
pub fn matvec_f16(w: &[u16], x: &[f32], y: &mut [f32], rows: usize, cols: usize) {
    assert!(w.len() >= rows * cols && x.len() >= cols && y.len() >= rows, "matvec_f16: slice too short");
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    for (o, out) in y.iter_mut().enumerate().take(rows) {
        // SAFETY: row o spans w[o*cols .. (o+1)*cols], inside the asserted extent; x has cols floats.
        unsafe {
            let row = wp.add(o * cols);
            let (mut a0, mut a1) = (zero(), zero());
            let mut i = 0;
            while i + 8 <= cols {
                let (lo, hi) = load_f16x8(row.add(i));
                a0 = madd(a0, lo, load(xp.add(i)));
                a1 = madd(a1, hi, load(xp.add(i + 4)));
                i += 8;
            }
            let mut s = hsum(add(a0, a1));
            while i < cols {
                s += f16_to_f32(*row.add(i)) * *xp.add(i);
                i += 1;
            }
            *out += s;
        }
    }
}

/// Rows of B kept hot per panel (128 x 512 floats = 256 KB, half an L2).
const NB: usize = 128;
/// Depth of a panel (floats). Measured in wasmtime: 512 (no k-split for d_model 512) ran
/// 1.5x faster than 256, because each k-split re-reads and re-writes the C tile.
const KC: usize = 512;

/// `MR x NR` tile: `c[r * ldc + j] += Σ_p a_r[p] · b_j[p]` for `p` in `0..kc`.
///
/// # Safety
/// `a` must address `MR` rows of stride `lda` with `kc` readable floats each, `b` `NR` rows of
/// stride `ldb`, and `c` an `MR x NR` block of stride `ldc`.
#[inline(always)]
unsafe fn tile<const MR: usize, const NR: usize>(
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    kc: usize,
    c: *mut f32,
    ldc: usize,
) {
    let mut acc = [[zero(); NR]; MR];
    let mut p = 0;
    // Two vectors of depth per iteration halve the loop overhead (measured +30% in wasm).
    while p + 8 <= kc {
        for u in [0, 4] {
            let mut va = [zero(); MR];
            for (r, v) in va.iter_mut().enumerate() {
                *v = load(a.add(r * lda + p + u));
            }
            for j in 0..NR {
                let vb: V = load(b.add(j * ldb + p + u));
                for r in 0..MR {
                    acc[r][j] = madd(acc[r][j], va[r], vb);
                }
            }
        }
        p += 8;
    }
    while p + 4 <= kc {
        let mut va = [zero(); MR];
        for (r, v) in va.iter_mut().enumerate() {
            *v = load(a.add(r * lda + p));
        }
        for j in 0..NR {
            let vb: V = load(b.add(j * ldb + p));
            for r in 0..MR {
                acc[r][j] = madd(acc[r][j], va[r], vb);
            }
        }
        p += 4;
    }
    for r in 0..MR {
        for j in 0..NR {
            let mut s = hsum(acc[r][j]);
            for q in p..kc {
                s += *a.add(r * lda + q) * *b.add(j * ldb + q);
            }
            *c.add(r * ldc + j) += s;
        }
    }
}

/// `c (m x n) += a (m x k) · b (n x k)ᵀ`, all row-major and contiguous.
///
/// Initialise `c` with zeros or with the bias broadcast over rows before calling.
pub fn matmul_nt(a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) {
    assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n, "matmul_nt: slice too short");
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    // SAFETY: every tile call below stays inside the m x k, n x k and m x n extents asserted above.
    unsafe {
        let mut jb = 0;
        while jb < n {
            let nb = NB.min(n - jb);
            let mut kb = 0;
            while kb < k {
                let kc = KC.min(k - kb);
                let mut i = 0;
                while i < m {
                    let mr = if m - i >= 2 { 2 } else { 1 };
                    let arow = ap.add(i * k + kb);
                    let mut j = jb;
                    while j < jb + nb {
                        let nr = (jb + nb - j).min(4);
                        let brow = bp.add(j * k + kb);
                        let crow = cp.add(i * n + j);
                        match (mr, nr) {
                            (2, 4) => tile::<2, 4>(arow, k, brow, k, kc, crow, n),
                            (1, 4) => tile::<1, 4>(arow, k, brow, k, kc, crow, n),
                            (2, _) => {
                                for q in 0..nr {
                                    tile::<2, 1>(arow, k, brow.add(q * k), k, kc, crow.add(q), n)
                                }
                            }
                            _ => {
                                for q in 0..nr {
                                    tile::<1, 1>(arow, k, brow.add(q * k), k, kc, crow.add(q), n)
                                }
                            }
                        }
                        j += nr;
                    }
                    i += mr;
                }
                kb += kc;
            }
            jb += nb;
        }
    }
}

/// Copy a contiguous f32 tensor's data (a cheap `Vec` clone of the visible region; the
/// kernels need plain slices).
fn data(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// Run `f` on a contiguous f32 tensor's elements without copying.
pub fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(cpu), Some((a, b))) => Ok(f(&cpu.as_slice::<f32>()?[a..b])),
        _ => {
            drop(storage);
            Ok(f(&data(&t)?))
        }
    }
}

/// `x W^T + b` for `x` of shape `(..., k)` and `w` of shape `(n, k)`, returning `(..., n)`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let (n, k) = w.dims2()?;
    let rows = x.elem_count() / k;
    let mut c = match b {
        Some(b) => with_slice(b, |bias| bias.iter().cloned().cycle().take(rows * n).collect::<Vec<f32>>())?,
        None => vec![0f32; rows * n],
    };
    with_slice(x, |xs| with_slice(w, |ws| matmul_nt(xs, ws, &mut c, rows, n, k)))??;
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("rank >= 1") = n;
    Tensor::from_vec(c, dims, &Device::Cpu)
}

/// Row-wise transpose of a `rows x cols` block into `cols x rows`.
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = src[r * cols + c];
        }
    }
    out
}

/// Multi-head attention on head-major tensors `q (1, H, tq, d)` (pre-scaled), `k, v (1, H,
/// tk, d)`, with an optional additive `(tq, tk)` mask; returns `(1, H, tq, d)`. Heads are
/// processed one at a time so the score buffer is `tq x tk`, not `H x tq x tk`.
///
/// Scores `Q Kᵀ` (depth 64) go through candle/gemm, which measured faster than our kernel
/// for that shallow shape in wasmtime; `P V` (depth `tk`, 64 outputs) goes through
/// [`matmul_nt`] on a transposed V, which measured ~1.6x faster than gemm there.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let (_, h, tq, d) = q.dims4()?;
    let tk = k.dim(2)?;
    let mut out = vec![0f32; h * tq * d];
    for head in 0..h {
        let qh = q.narrow(1, head, 1)?.reshape((tq, d))?;
        let kh = k.narrow(1, head, 1)?.reshape((tk, d))?;
        let mut scores = qh.matmul(&kh.t()?)?;
        if let Some(m) = mask {
            scores = scores.broadcast_add(m)?;
        }
        crate::ops::softmax_last_dim_(&scores)?;
        let vt = with_slice(&v.narrow(1, head, 1)?, |vs| transpose(vs, tk, d))?;
        with_slice(&scores, |p| matmul_nt(p, &vt, &mut out[head * tq * d..(head + 1) * tq * d], tq, d, tk))?;
    }
    Tensor::from_vec(out, (1, h, tq, d), &Device::Cpu)
}

/// 1-D convolution (kernel 3, padding 1) on a time-major input `x (t_in, c_in)`, with the
/// weight pre-permuted to `(c_out, 3, c_in)`; returns time-major `(t_out, c_out)` with the
/// bias added. Each im2col row is three consecutive input rows, so it is built by copying.
pub fn conv3_time_major(x: &[f32], t_in: usize, c_in: usize, w: &[f32], bias: &[f32], stride: usize) -> Vec<f32> {
    let c_out = bias.len();
    let t_out = (t_in + 2 - 3) / stride + 1;
    let kk = 3 * c_in;
    let mut cols = vec![0f32; t_out * kk];
    for t in 0..t_out {
        for tap in 0..3 {
            let src = (t * stride + tap) as isize - 1;
            if src >= 0 && (src as usize) < t_in {
                let s = src as usize;
                cols[t * kk + tap * c_in..t * kk + (tap + 1) * c_in].copy_from_slice(&x[s * c_in..(s + 1) * c_in]);
            }
        }
    }
    let mut out: Vec<f32> = bias.iter().cloned().cycle().take(t_out * c_out).collect();
    matmul_nt(&cols, w, &mut out, t_out, c_out, kk);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] as f64 * b[j * k + p] as f64).sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn matches_reference_on_awkward_shapes() {
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (2, 4, 8), (7, 67, 300), (5, 130, 513), (1, 9, 64)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
            let b: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1).collect();
            let mut c = vec![1.0f32; m * n];
            matmul_nt(&a, &b, &mut c, m, n, k);
            let r = reference(&a, &b, m, n, k);
            for (x, y) in c.iter().zip(&r) {
                assert!((x - 1.0 - y).abs() < 1e-3 * (1.0 + y.abs()), "{m}x{n}x{k}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn linear_and_attention_match_candle() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 9, 16), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (12, 16), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 12, &dev).unwrap();
        let ours = linear(&x, &w, Some(&b)).unwrap();
        let theirs = x.broadcast_matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        let d = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-4, "{d}");

        let q = Tensor::randn(0f32, 0.3, (1, 2, 5, 8), &dev).unwrap();
        let k = Tensor::randn(0f32, 0.3, (1, 2, 7, 8), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, 2, 7, 8), &dev).unwrap();
        let mask = Tensor::from_vec((0..35).map(|i| if i % 7 > 4 { f32::NEG_INFINITY } else { 0.0 }).collect::<Vec<f32>>(), (5, 7), &dev).unwrap();
        let ours = attention(&q, &k, &v, Some(&mask)).unwrap();
        let s = q.matmul(&k.t().unwrap()).unwrap().broadcast_add(&mask).unwrap();
        let theirs = candle_nn::ops::softmax_last_dim(&s).unwrap().matmul(&v).unwrap();
        let d = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-4, "{d}");
    }

    #[test]
    fn f16_conversion_is_exact() {
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            if h.is_finite() {
                assert_eq!(f16_to_f32(bits), h.to_f32(), "bits {bits:#06x}");
            }
        }
        let (rows, cols) = (5, 19);
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.37).collect();
        let wb: Vec<u16> = w.iter().map(|v| half::f16::from_f32(*v).to_bits()).collect();
        let wr: Vec<f32> = wb.iter().map(|b| half::f16::from_bits(*b).to_f32()).collect();
        let x: Vec<f32> = (0..cols).map(|i| i as f32 * 0.1 - 0.5).collect();
        let mut y = vec![1f32; rows];
        matvec_f16(&wb, &x, &mut y, rows, cols);
        let r = reference(&x, &wr, 1, rows, cols);
        for (a, b) in y.iter().zip(&r) {
            assert!((a - 1.0 - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn conv_matches_candle() {
        let dev = Device::Cpu;
        let (c_in, c_out, t) = (5, 6, 11);
        let x = Tensor::randn(0f32, 1.0, (1, c_in, t), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (c_out, c_in, 3), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, c_out, &dev).unwrap();
        for stride in [1, 2] {
            let theirs = x.conv1d(&w, 1, stride, 1, 1).unwrap().broadcast_add(&b.reshape((1, c_out, 1)).unwrap()).unwrap();
            let theirs = theirs.squeeze(0).unwrap().t().unwrap().contiguous().unwrap(); // (t_out, c_out)
            let xt: Vec<f32> = data(&x.squeeze(0).unwrap().t().unwrap().contiguous().unwrap()).unwrap();
            let wp: Vec<f32> = data(&w.permute((0, 2, 1)).unwrap().contiguous().unwrap()).unwrap();
            let ours = conv3_time_major(&xt, t, c_in, &wp, &data(&b).unwrap(), stride);
            let theirs = data(&theirs).unwrap();
            assert_eq!(ours.len(), theirs.len());
            for (a, b) in ours.iter().zip(&theirs) {
                assert!((a - b).abs() < 1e-4, "stride {stride}: {a} vs {b}");
            }
        }
    }
}
