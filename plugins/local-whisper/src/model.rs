//! The Whisper encoder and decoder, written directly against candle tensor ops.
//!
//! We write the network ourselves instead of using `candle-transformers` so that:
//! - the decoder keeps a real self-attention KV cache (each step feeds only the new
//!   token; keys/values of earlier tokens are appended, not recomputed), and the
//!   cross-attention keys/values are computed once per 30 s window;
//! - the fused projections of the CTranslate2 export stay fused (one `[3D, D]` matmul for
//!   q, k, v), and the `d_head^-0.5` attention scale is folded into the q weights at load
//!   time, so no per-step scaling pass is needed;
//! - nothing spawns threads beyond what candle's CPU backend does (on wasm32 it runs on
//!   the calling thread).
//!
//! Numerics follow OpenAI's reference: pre-LayerNorm blocks (eps 1e-5), exact (erf) GELU,
//! sinusoidal encoder positions (taken from the file when stored), learned decoder
//! positions, output projection tied to the token embedding.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::ct2::{Ct2Error, Ct2Model, ModelConfig};

/// Errors from running the network.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed (shape mismatch, allocation failure, ...).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The weights do not describe a usable Whisper network.
    #[error(transparent)]
    Weights(#[from] Ct2Error),
    /// The decoder was asked to go past its learned positions.
    #[error("decoder context full: {needed} positions requested, model has {max}")]
    ContextFull {
        /// Positions needed.
        needed: usize,
        /// Positions available.
        max: usize,
    },
}

type Result<T> = std::result::Result<T, ModelError>;

const LN_EPS: f32 = 1e-5;

/// A weight matrix `(out, in)`: f32 for the encoder (compute-bound, gemm wants f32), or the
/// exact f16 bits for the decoder when enabled (memory-bound per token, half the bytes).
#[derive(Debug, Clone)]
enum Weight {
    F32(Tensor),
    F16 { bits: Arc<Vec<u16>>, rows: usize, cols: usize },
}

impl Weight {
    /// Scale the first `rows_scaled` rows of an f16 matrix (exact for the power-of-two
    /// attention scale of 64-wide heads, barring f16 underflow).
    fn f16_scaled(bits: &[u16], shape: &[usize], rows_scaled: usize, scale: f64) -> Weight {
        let cols = shape[1];
        let out: Vec<u16> = bits
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if i / cols < rows_scaled {
                    half::f16::from_f32((crate::matmul::f16_to_f32(b) as f64 * scale) as f32).to_bits()
                } else {
                    b
                }
            })
            .collect();
        Weight::F16 { bits: Arc::new(out), rows: shape[0], cols }
    }

    fn rows(&self) -> Result<usize> {
        Ok(match self {
            Weight::F32(t) => t.dim(0)?,
            Weight::F16 { rows, .. } => *rows,
        })
    }

    /// The weight as an f32 tensor (a temporary copy for f16 weights; used for the rare
    /// multi-row products such as the prompt).
    fn f32(&self) -> Result<Tensor> {
        Ok(match self {
            Weight::F32(t) => t.clone(),
            Weight::F16 { bits, rows, cols } => {
                let v: Vec<f32> = bits.iter().map(|&b| crate::matmul::f16_to_f32(b)).collect();
                Tensor::from_vec(v, (*rows, *cols), &Device::Cpu)?
            }
        })
    }
}

/// A dense layer `y = x W^T + b` over the last dimension.
#[derive(Debug, Clone)]
struct Linear {
    w: Weight,
    b: Option<Tensor>,
}

impl Linear {
    /// Single-row input with f16 weights: the decoder's per-token matrix-vector product.
    fn matvec_f16(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let Weight::F16 { bits, rows, cols } = &self.w else { return Ok(None) };
        if x.elem_count() != *cols {
            return Ok(None);
        }
        let xv = x.flatten_all()?.to_vec1::<f32>()?;
        let mut y = match &self.b {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0f32; *rows],
        };
        crate::matmul::matvec_f16(bits, &xv, &mut y, *rows, *cols);
        let mut dims = x.dims().to_vec();
        *dims.last_mut().expect("rank >= 1") = *rows;
        Ok(Some(Tensor::from_vec(y, dims, &Device::Cpu)?))
    }

    /// `gelu(x W^T + b)` with the bias and activation fused into one in-place pass.
    fn forward_gelu(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(y) = self.matvec_f16(x)? {
            crate::ops::gelu_inplace_(&y)?;
            return Ok(y);
        }
        let w = self.w.f32()?;
        if crate::matmul::own_kernels() {
            let y = crate::matmul::linear(x, &w, None)?;
            match &self.b {
                Some(b) => crate::ops::add_bias_gelu_(&y, b)?,
                None => return Ok(y.gelu_erf()?),
            }
            return Ok(y);
        }
        let (rows, last) = (x.elem_count() / x.dim(candle_core::D::Minus1)?, x.dim(candle_core::D::Minus1)?);
        let y = x.reshape((rows, last))?.matmul(&w.t()?)?;
        match &self.b {
            Some(b) => crate::ops::add_bias_gelu_(&y, b)?,
            None => return Ok(y.gelu_erf()?.reshape(self.out_dims(x)?)?),
        }
        Ok(y.reshape(self.out_dims(x)?)?)
    }

    fn out_dims(&self, x: &Tensor) -> Result<Vec<usize>> {
        let mut d = x.dims().to_vec();
        *d.last_mut().expect("rank >= 1") = self.w.rows()?;
        Ok(d)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(y) = self.matvec_f16(x)? {
            return Ok(y);
        }
        let w = self.w.f32()?;
        if crate::matmul::own_kernels() {
            return Ok(crate::matmul::linear(x, &w, self.b.as_ref())?);
        }
        // Flatten leading dims so candle runs a single 2-D gemm instead of a batched one.
        let dims = x.dims().to_vec();
        let (last, lead) = dims.split_last().expect("rank >= 1");
        let rows: usize = lead.iter().product();
        let x2 = x.reshape((rows, *last))?;
        let y = x2.matmul(&w.t()?)?;
        if let Some(b) = &self.b {
            // The matmul output is fresh and unshared, so the bias can be added in place.
            crate::ops::add_bias_(&y, b)?;
        }
        Ok(y.reshape(self.out_dims(x)?)?)
    }
}

#[derive(Debug, Clone)]
struct LayerNorm {
    w: Tensor,
    b: Tensor,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(&x.contiguous()?, &self.w, &self.b, LN_EPS)?)
    }
}

/// Fetches mapped tensors from a parsed `model.bin` with layer prefixes.
struct Loader<'a> {
    m: &'a Ct2Model,
}

impl Loader<'_> {
    fn t(&self, name: &str) -> Result<Tensor> {
        Ok(self.m.get(name)?.clone())
    }
    /// A matrix, as f16 if the parser kept it half, else f32; `scale` multiplies the
    /// first `scaled_rows` rows (the query projection).
    fn weight(&self, name: &str, scaled_rows: usize, scale: f64) -> Result<Weight> {
        if let Some((bits, shape)) = self.m.half.get(name) {
            if scaled_rows == 0 {
                // Shared with the parsed model, not copied: the parse result is dropped after loading.
                return Ok(Weight::F16 { bits: bits.clone(), rows: shape[0], cols: shape[1] });
            }
            return Ok(Weight::f16_scaled(bits, shape, scaled_rows, scale));
        }
        let w = self.t(name)?;
        if scaled_rows == 0 {
            return Ok(Weight::F32(w));
        }
        let rows = w.dim(0)?;
        let scaled_rows = scaled_rows.min(rows);
        let scaled = (w.narrow(0, 0, scaled_rows)? * scale)?;
        Ok(Weight::F32(if scaled_rows < rows { Tensor::cat(&[scaled, w.narrow(0, scaled_rows, rows - scaled_rows)?], 0)? } else { scaled }))
    }
    fn linear(&self, prefix: &str) -> Result<Linear> {
        Ok(Linear { w: self.weight(&format!("{prefix}.weight"), 0, 1.0)?, b: self.m.tensors.get(&format!("{prefix}.bias")).cloned() })
    }

    fn ln(&self, prefix: &str) -> Result<LayerNorm> {
        Ok(LayerNorm { w: self.t(&format!("{prefix}.weight"))?, b: self.t(&format!("{prefix}.bias"))? })
    }
    /// The fused q/k/v projection with the q rows pre-multiplied by `scale`.
    fn qkv(&self, prefix: &str, d: usize, scale: f64) -> Result<Linear> {
        let b = match self.m.tensors.get(&format!("{prefix}.bias")) {
            Some(b) => Some(Tensor::cat(&[(b.narrow(0, 0, d)? * scale)?, b.narrow(0, d, 2 * d)?], 0)?),
            None => None,
        };
        Ok(Linear { w: self.weight(&format!("{prefix}.weight"), d, scale)?, b })
    }
    fn scaled(&self, prefix: &str, scale: f64) -> Result<Linear> {
        let w = self.weight(&format!("{prefix}.weight"), usize::MAX, scale)?;
        let b = self.m.tensors.get(&format!("{prefix}.bias")).map(|b| b * scale).transpose()?;
        Ok(Linear { w, b })
    }
}

/// Split `(1, T, H * dh)` into heads: `(1, H, T, dh)`, contiguous for the batched matmul.
fn heads(x: &Tensor, h: usize) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    Ok(x.reshape((b, t, h, d / h))?.transpose(1, 2)?.contiguous()?)
}

/// Merge heads back: `(1, H, T, dh)` -> `(1, T, H * dh)`.
fn merge(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, dh) = x.dims4()?;
    Ok(x.transpose(1, 2)?.reshape((b, t, h * dh))?)
}

/// Scaled dot-product attention; `q` is pre-scaled, `mask` is added to the scores.
///
/// Large score matrices (the encoder's 8 x 1500 x 1500, 72 MB) are computed one head at a
/// time: a 9 MB buffer is recycled by the allocator, while a 72 MB one is mapped fresh and
/// page-faulted on every layer natively (measured 2x slower) and raises the wasm memory peak.
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    if crate::matmul::own_kernels() {
        return Ok(crate::matmul::attention(q, k, v, mask)?);
    }
    let (_, h, tq, _) = q.dims4()?;
    let tk = k.dim(2)?;
    if h > 1 && tq * tk > 64 * 1024 {
        let outs = (0..h)
            .map(|i| attend(&q.narrow(1, i, 1)?, &k.narrow(1, i, 1)?, &v.narrow(1, i, 1)?, mask))
            .collect::<Result<Vec<_>>>()?;
        return Ok(Tensor::cat(&outs, 1)?);
    }
    let mut w = q.matmul(&k.t()?)?;
    if let Some(m) = mask {
        w = w.broadcast_add(m)?;
    }
    // Fresh scores tensor: softmax in place with the vectorised kernel.
    crate::ops::softmax_last_dim_(&w)?;
    Ok(w.matmul(v)?)
}

#[derive(Debug, Clone)]
struct EncoderBlock {
    ln1: LayerNorm,
    qkv: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The audio encoder: two convolutions then pre-LN transformer blocks.
#[derive(Debug, Clone)]
pub struct Encoder {
    conv1_w: Tensor,
    conv1_b: Tensor,
    conv2_w: Tensor,
    conv2_b: Tensor,
    /// Convolution weights permuted to `(c_out, 3, c_in)` for the time-major kernel path.
    conv1_wp: Vec<f32>,
    conv2_wp: Vec<f32>,
    positions: Tensor,
    blocks: Vec<EncoderBlock>,
    ln_post: LayerNorm,
    n_head: usize,
    d_model: usize,
}

fn sinusoids(length: usize, channels: usize) -> Result<Tensor> {
    // Whisper's `sinusoids`: first half sin, second half cos, log-spaced timescales up to 10000.
    let half = channels / 2;
    let inc = (10000f64).ln() / (half as f64 - 1.0);
    let mut v = vec![0f32; length * channels];
    for t in 0..length {
        for i in 0..half {
            let a = t as f64 * (-inc * i as f64).exp();
            v[t * channels + i] = a.sin() as f32;
            v[t * channels + half + i] = a.cos() as f32;
        }
    }
    Ok(Tensor::from_vec(v, (length, channels), &Device::Cpu)?)
}

impl Encoder {
    fn load(l: &Loader, c: &ModelConfig) -> Result<Self> {
        let d = c.d_model;
        let scale = ((d / c.n_audio_head) as f64).powf(-0.5);
        let blocks = (0..c.n_audio_layer)
            .map(|i| {
                let p = format!("encoder.layers.{i}");
                Ok(EncoderBlock {
                    ln1: l.ln(&format!("{p}.self_attn_layer_norm"))?,
                    qkv: l.qkv(&format!("{p}.self_attn.qkv_proj"), d, scale)?,
                    out: l.linear(&format!("{p}.self_attn.out_proj"))?,
                    ln2: l.ln(&format!("{p}.final_layer_norm"))?,
                    fc1: l.linear(&format!("{p}.fc1"))?,
                    fc2: l.linear(&format!("{p}.fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let positions = match l.m.tensors.get("encoder.embed_positions.weight") {
            Some(p) => p.clone(),
            None => sinusoids(c.n_audio_ctx, d)?,
        };
        let permuted = |name: &str| -> Result<Vec<f32>> {
            Ok(l.t(name)?.permute((0, 2, 1))?.contiguous()?.flatten_all()?.to_vec1::<f32>()?)
        };
        Ok(Encoder {
            conv1_wp: permuted("encoder.conv1.weight")?,
            conv2_wp: permuted("encoder.conv2.weight")?,
            conv1_w: l.t("encoder.conv1.weight")?,
            conv1_b: l.t("encoder.conv1.bias")?,
            conv2_w: l.t("encoder.conv2.weight")?,
            conv2_b: l.t("encoder.conv2.bias")?,
            positions,
            blocks,
            ln_post: l.ln("encoder.layer_norm")?,
            n_head: c.n_audio_head,
            d_model: d,
        })
    }

    /// Encode one window of log-mel frames `(n_mels, frames)` (mel-major) into audio
    /// features `(1, frames / 2, d_model)`.
    pub fn forward(&self, mel: &[f32], n_mels: usize) -> Result<Tensor> {
        let frames = mel.len() / n_mels;
        let x = if crate::matmul::own_kernels() {
            use crate::matmul::{conv3_time_major, transpose, with_slice};
            let d = self.d_model;
            let xt = transpose(mel, n_mels, frames);
            let mut h = with_slice(&self.conv1_b, |b| conv3_time_major(&xt, frames, n_mels, &self.conv1_wp, b, 1))?;
            crate::ops::gelu_slice(&mut h);
            let mut h = with_slice(&self.conv2_b, |b| conv3_time_major(&h, frames, d, &self.conv2_wp, b, 2))?;
            crate::ops::gelu_slice(&mut h);
            let t = h.len() / d;
            Tensor::from_vec(h, (1, t, d), &Device::Cpu)?
        } else {
            let x = Tensor::from_slice(mel, (1, n_mels, frames), &Device::Cpu)?;
            let x = x.conv1d(&self.conv1_w, 1, 1, 1, 1)?.contiguous()?;
            crate::ops::add_channel_bias_gelu_(&x, &self.conv1_b)?;
            let x = x.conv1d(&self.conv2_w, 1, 2, 1, 1)?.contiguous()?;
            crate::ops::add_channel_bias_gelu_(&x, &self.conv2_b)?;
            x.transpose(1, 2)?
        };
        let t = x.dim(1)?;
        let mut x = x.broadcast_add(&self.positions.narrow(0, 0, t)?)?;
        let d = self.d_model;
        for b in &self.blocks {
            let h = b.ln1.forward(&x)?;
            let qkv = b.qkv.forward(&h)?;
            let q = heads(&qkv.narrow(2, 0, d)?, self.n_head)?;
            let k = heads(&qkv.narrow(2, d, d)?, self.n_head)?;
            let v = heads(&qkv.narrow(2, 2 * d, d)?, self.n_head)?;
            let a = merge(&attend(&q, &k, &v, None)?)?;
            x = (x + b.out.forward(&a)?)?;
            let h = b.ln2.forward(&x)?;
            let h = b.fc2.forward(&b.fc1.forward_gelu(&h)?)?;
            x = (x + h)?;
        }
        self.ln_post.forward(&x)
    }
}

#[derive(Debug, Clone)]
struct DecoderBlock {
    ln1: LayerNorm,
    qkv: Linear,
    self_out: Linear,
    ln2: LayerNorm,
    cross_q: Linear,
    cross_kv: Linear,
    cross_out: Linear,
    ln3: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The text decoder weights (shared by every decoding session).
#[derive(Debug, Clone)]
pub struct Decoder {
    embed: Weight,
    positions: Tensor,
    blocks: Vec<DecoderBlock>,
    ln: LayerNorm,
    n_head: usize,
    d_model: usize,
}

/// Per-window decoding state: cross-attention keys/values (computed once from the audio
/// features) and the growing self-attention KV cache.
#[derive(Debug)]
pub struct DecoderState {
    cross: Vec<(Tensor, Tensor)>,
    cache: Vec<Option<(Tensor, Tensor)>>,
    /// Number of positions already in the self-attention cache.
    pub offset: usize,
}

impl DecoderState {
    /// Forget the self-attention cache (a new prompt), keeping the audio keys/values.
    pub fn reset(&mut self) {
        self.cache.iter_mut().for_each(|c| *c = None);
        self.offset = 0;
    }
}

impl Decoder {
    fn load(l: &Loader, c: &ModelConfig) -> Result<Self> {
        let d = c.d_model;
        let scale = ((d / c.n_text_head) as f64).powf(-0.5);
        let blocks = (0..c.n_text_layer)
            .map(|i| {
                let p = format!("decoder.layers.{i}");
                Ok(DecoderBlock {
                    ln1: l.ln(&format!("{p}.self_attn_layer_norm"))?,
                    qkv: l.qkv(&format!("{p}.self_attn.qkv_proj"), d, scale)?,
                    self_out: l.linear(&format!("{p}.self_attn.out_proj"))?,
                    ln2: l.ln(&format!("{p}.encoder_attn_layer_norm"))?,
                    cross_q: l.scaled(&format!("{p}.encoder_attn.q_proj"), scale)?,
                    cross_kv: l.linear(&format!("{p}.encoder_attn.kv_proj"))?,
                    cross_out: l.linear(&format!("{p}.encoder_attn.out_proj"))?,
                    ln3: l.ln(&format!("{p}.final_layer_norm"))?,
                    fc1: l.linear(&format!("{p}.fc1"))?,
                    fc2: l.linear(&format!("{p}.fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Decoder {
            embed: l.weight("decoder.embed_tokens.weight", 0, 1.0)?,
            positions: l.t("decoder.embed_positions.weight")?,
            blocks,
            ln: l.ln("decoder.layer_norm")?,
            n_head: c.n_text_head,
            d_model: d,
        })
    }

    /// Maximum number of token positions.
    pub fn n_ctx(&self) -> usize {
        self.positions.dims()[0]
    }

    /// Precompute the cross-attention keys/values of every layer for one window.
    pub fn start(&self, audio: &Tensor) -> Result<DecoderState> {
        let d = self.d_model;
        let cross = self
            .blocks
            .iter()
            .map(|b| {
                let kv = b.cross_kv.forward(audio)?;
                Ok((heads(&kv.narrow(2, 0, d)?, self.n_head)?, heads(&kv.narrow(2, d, d)?, self.n_head)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderState { cross, cache: vec![None; self.blocks.len()], offset: 0 })
    }

    /// Run `tokens` (which continue the cached sequence) through the decoder and return the
    /// final hidden states `(tokens.len(), d_model)`; the cache grows by `tokens.len()`.
    pub fn forward(&self, tokens: &[u32], st: &mut DecoderState) -> Result<Tensor> {
        let n = tokens.len();
        let needed = st.offset + n;
        if needed > self.n_ctx() {
            return Err(ModelError::ContextFull { needed, max: self.n_ctx() });
        }
        let dev = Device::Cpu;
        let x = match &self.embed {
            Weight::F32(e) => e.index_select(&Tensor::from_slice(tokens, n, &dev)?, 0)?,
            Weight::F16 { bits, rows, cols } => {
                let mut v = Vec::with_capacity(n * cols);
                for &t in tokens {
                    let t = (t as usize).min(rows - 1);
                    v.extend(bits[t * cols..(t + 1) * cols].iter().map(|&b| crate::matmul::f16_to_f32(b)));
                }
                Tensor::from_vec(v, (n, *cols), &dev)?
            }
        };
        let x = (x + self.positions.narrow(0, st.offset, n)?)?;
        let mut x = x.unsqueeze(0)?;
        // Causal mask over (new tokens) x (cached + new tokens); only needed for n > 1.
        let mask = if n > 1 {
            let off = st.offset;
            let total = off + n;
            let m: Vec<f32> = (0..n)
                .flat_map(|i| (0..total).map(move |j| if j > off + i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            Some(Tensor::from_vec(m, (n, total), &dev)?)
        } else {
            None
        };
        let d = self.d_model;
        for (i, b) in self.blocks.iter().enumerate() {
            let h = b.ln1.forward(&x)?;
            let qkv = b.qkv.forward(&h)?;
            let q = heads(&qkv.narrow(2, 0, d)?, self.n_head)?;
            let mut k = heads(&qkv.narrow(2, d, d)?, self.n_head)?;
            let mut v = heads(&qkv.narrow(2, 2 * d, d)?, self.n_head)?;
            if let Some((pk, pv)) = &st.cache[i] {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            let a = merge(&attend(&q, &k, &v, mask.as_ref())?)?;
            st.cache[i] = Some((k, v));
            x = (x + b.self_out.forward(&a)?)?;
            let h = b.ln2.forward(&x)?;
            let q = heads(&b.cross_q.forward(&h)?, self.n_head)?;
            let (ck, cv) = &st.cross[i];
            let a = merge(&attend(&q, ck, cv, None)?)?;
            x = (x + b.cross_out.forward(&a)?)?;
            let h = b.ln3.forward(&x)?;
            let h = b.fc2.forward(&b.fc1.forward_gelu(&h)?)?;
            x = (x + h)?;
        }
        st.offset += n;
        Ok(self.ln.forward(&x)?.squeeze(0)?)
    }

    /// Logits over the vocabulary for one hidden row `(d_model,)` or `(1, d_model)`.
    pub fn logits(&self, hidden_row: &Tensor) -> Result<Vec<f32>> {
        // E (V, D) x h (D, 1): a row-major matrix-vector product, the fastest layout for gemm.
        let embed = match &self.embed {
            Weight::F16 { bits, rows, cols } => {
                let h = hidden_row.flatten_all()?.to_vec1::<f32>()?;
                let mut out = vec![0f32; *rows];
                crate::matmul::matvec_f16(bits, &h, &mut out, *rows, *cols);
                return Ok(out);
            }
            Weight::F32(e) => e,
        };
        if crate::matmul::own_kernels() {
            let h = hidden_row.flatten_all()?.to_vec1::<f32>()?;
            let n = embed.dim(0)?;
            let mut out = vec![0f32; n];
            crate::matmul::with_slice(embed, |e| crate::matmul::matmul_nt(&h, e, &mut out, 1, n, self.d_model))?;
            return Ok(out);
        }
        let h = hidden_row.reshape((self.d_model, 1))?;
        Ok(embed.matmul(&h)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// The complete network.
#[derive(Debug, Clone)]
pub struct WhisperModel {
    /// Audio encoder.
    pub encoder: Encoder,
    /// Text decoder.
    pub decoder: Decoder,
    /// Hyper-parameters.
    pub config: ModelConfig,
}

impl WhisperModel {
    /// Build the network from a parsed `model.bin` (tensors are shared, not copied, except
    /// for the pre-scaled q projections). Matrices the parser kept as f16 (see
    /// [`WhisperModel::half_decoder_filter`]) are used through the f16 matrix-vector kernel.
    pub fn new(m: &Ct2Model) -> Result<Self> {
        let l = Loader { m };
        let c = m.config.clone();
        for (name, t) in &m.tensors {
            if t.dtype() != DType::F32 {
                return Err(ModelError::Weights(Ct2Error::BadShape {
                    name: name.clone(),
                    shape: t.dims().to_vec(),
                    expected: "f32 data".into(),
                }));
            }
        }
        Ok(WhisperModel { encoder: Encoder::load(&l, &c)?, decoder: Decoder::load(&l, &c)?, config: c })
    }

    /// Which mapped tensors to keep as f16 for a "half decoder": the decoder matrices used
    /// once per token (memory-bound), not the positions (sliced as a tensor) and not the
    /// cross-attention K/V projection (run on all audio rows once per window: compute-bound,
    /// gemm wants f32).
    pub fn half_decoder_filter(name: &str) -> bool {
        name.starts_with("decoder.") && !name.contains("embed_positions") && !name.contains("kv_proj")
    }
}

/// Index of the largest value (first one on ties); used for greedy decoding.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Log-softmax of a slice of logits (the log-sum-exp is accumulated in f64 for stability).
pub fn log_softmax(v: &[f32]) -> Vec<f32> {
    let max = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = (v.iter().map(|&x| ((x - max) as f64).exp()).sum::<f64>()).ln() as f32 + max;
    v.iter().map(|&x| x - lse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_kernels_match_candle_path() {
        let m = Ct2Model::parse(&crate::ct2::tests::tiny_model()).unwrap();
        let model = WhisperModel::new(&m).unwrap();
        let mel: Vec<f32> = (0..4 * 12).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1).collect();
        let run = |own: bool| {
            crate::matmul::set_own_kernels(own);
            let audio = model.encoder.forward(&mel, 4).unwrap();
            let mut st = model.decoder.start(&audio).unwrap();
            model.decoder.forward(&[3, 7, 1], &mut st).unwrap();
            let h = model.decoder.forward(&[12], &mut st).unwrap();
            let l = model.decoder.logits(&h.get(0).unwrap()).unwrap();
            (audio.flatten_all().unwrap().to_vec1::<f32>().unwrap(), l)
        };
        let default = crate::matmul::own_kernels();
        let (a1, l1) = run(true);
        let (a2, l2) = run(false);
        crate::matmul::set_own_kernels(default);
        for (x, y) in a1.iter().zip(&a2).chain(l1.iter().zip(&l2)) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }

    #[test]
    fn half_decoder_matches_f32_decoder() {
        let bytes = crate::ct2::tests::tiny_model();
        let a = WhisperModel::new(&Ct2Model::parse(&bytes).unwrap()).unwrap();
        let mh = Ct2Model::parse_with(&bytes, &WhisperModel::half_decoder_filter).unwrap();
        assert!(mh.half.contains_key("decoder.embed_tokens.weight") && mh.half.contains_key("decoder.layers.0.fc2.weight"));
        let b = WhisperModel::new(&mh).unwrap();
        let mel: Vec<f32> = (0..4 * 12).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1).collect();
        let audio = a.encoder.forward(&mel, 4).unwrap();
        let run = |model: &WhisperModel| {
            let mut st = model.decoder.start(&audio).unwrap();
            model.decoder.forward(&[3, 7, 1], &mut st).unwrap();
            let h = model.decoder.forward(&[12], &mut st).unwrap();
            model.decoder.logits(&h.get(0).unwrap()).unwrap()
        };
        let (la, lb) = (run(&a), run(&b));
        for (x, y) in la.iter().zip(&lb) {
            assert!((x - y).abs() < 2e-3, "{la:?} vs {lb:?}");
        }
    }

    #[test]
    fn kv_cache_matches_full_recompute() {
        let m = Ct2Model::parse(&crate::ct2::tests::tiny_model()).unwrap();
        let model = WhisperModel::new(&m).unwrap();
        let mel: Vec<f32> = (0..4 * 12).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1).collect();
        let audio = model.encoder.forward(&mel, 4).unwrap();
        assert_eq!(audio.dims(), &[1, 6, 8]);
        let toks = [3u32, 7, 1, 12];
        // All at once.
        let mut st = model.decoder.start(&audio).unwrap();
        let full = model.decoder.forward(&toks, &mut st).unwrap();
        let full_last = model.decoder.logits(&full.get(3).unwrap()).unwrap();
        // Prompt then one token at a time.
        let mut st = model.decoder.start(&audio).unwrap();
        model.decoder.forward(&toks[..2], &mut st).unwrap();
        model.decoder.forward(&toks[2..3], &mut st).unwrap();
        let h = model.decoder.forward(&toks[3..], &mut st).unwrap();
        let inc_last = model.decoder.logits(&h.get(0).unwrap()).unwrap();
        assert_eq!(full_last.len(), 20);
        for (a, b) in full_last.iter().zip(&inc_last) {
            assert!((a - b).abs() < 1e-4, "{full_last:?} vs {inc_last:?}");
        }
        assert_eq!(st.offset, 4);
        assert!(matches!(
            model.decoder.forward(&[1; 7], &mut st),
            Err(ModelError::ContextFull { needed: 11, max: 10 })
        ));
    }
}
