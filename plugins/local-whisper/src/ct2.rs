//! Reader for CTranslate2 `model.bin` files holding a Whisper model.
//!
//! The offline weights we can obtain are faster-whisper (CTranslate2) exports, not
//! safetensors, so this module parses that binary format directly from a byte slice
//! (the core never touches the filesystem: the caller decides where bytes come from).
//!
//! Layout (little-endian): `u32` binary version; for version >= 2 a string spec name and
//! a `u32` spec revision; `u32` variable count; per variable a string name, `u8` rank,
//! `rank` x `u32` dims, then (version >= 4) `u8` dtype code and `u32` byte count, or
//! (older) `u8` item size and `u32` element count; the raw bytes. For version >= 3 an
//! alias table follows: `u32` count and (alias, target) string pairs. A string is a
//! `u16` length that counts a trailing NUL, then the bytes.
//!
//! Every float tensor is converted to `f32` on load because candle's CPU matmul is
//! fastest in `f32` and the wasm target has no native half-precision arithmetic.
//! Quantized exports (int8/int16 weights) are refused: dequantizing them would need
//! the per-row scales and a different model path, which we do not implement.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Tensor};

/// Errors raised while reading a `model.bin`.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    /// The byte slice ended before the structure it announced was complete.
    #[error("model.bin is truncated: needed {needed} bytes at offset {offset}, file has {len}")]
    Truncated {
        /// Offset at which the read started.
        offset: usize,
        /// Bytes the read needed.
        needed: usize,
        /// Total length of the input.
        len: usize,
    },
    /// The binary version is one we do not know how to read.
    #[error("unsupported CTranslate2 binary version {0} (supported: 1 to 6)")]
    UnsupportedVersion(u32),
    /// The file is a CTranslate2 model, but not a Whisper one.
    #[error("model.bin holds a `{0}`, not a WhisperSpec model")]
    NotWhisper(String),
    /// A weight tensor uses a quantized or integer type; only f32/f16/bf16 exports are supported.
    #[error(
        "variable `{name}` uses dtype {dtype} ({dtype_name}); only float32/float16/bfloat16 \
         CTranslate2 exports are supported (convert with --quantization float16)"
    )]
    Quantized {
        /// Variable name as stored in the file.
        name: String,
        /// Raw dtype code.
        dtype: u8,
        /// Human readable name of the dtype code.
        dtype_name: &'static str,
    },
    /// The byte count of a variable does not match its shape and dtype.
    #[error("variable `{name}`: {bytes} bytes do not match shape {shape:?} of dtype {dtype}")]
    SizeMismatch {
        /// Variable name.
        name: String,
        /// Declared byte count.
        bytes: usize,
        /// Declared shape.
        shape: Vec<usize>,
        /// Raw dtype code.
        dtype: u8,
    },
    /// A string in the file is not valid UTF-8.
    #[error("invalid UTF-8 in a name at offset {0}")]
    BadString(usize),
    /// A tensor the Whisper model needs is missing.
    #[error("model.bin lacks the tensor `{0}`")]
    Missing(String),
    /// A tensor has a shape the Whisper model cannot use.
    #[error("tensor `{name}` has shape {shape:?}, expected {expected}")]
    BadShape {
        /// Tensor name (mapped name).
        name: String,
        /// Actual shape.
        shape: Vec<usize>,
        /// Description of what was expected.
        expected: String,
    },
    /// candle failed to build a tensor.
    #[error("tensor construction failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// A rank-0 integer or boolean value stored in `model.bin` (e.g. `encoder/num_heads`).
///
/// CTranslate2 stores model options as scalars next to the weights; these are
/// configuration, not quantized weights, so integer dtypes are accepted here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    /// An integer scalar (int8, int16 or int32 in the file).
    Int(i64),
    /// A float scalar.
    Float(f32),
}

impl Scalar {
    /// The scalar as an integer (floats are truncated), so callers need not match on the type.
    pub fn as_i64(&self) -> i64 {
        match *self {
            Scalar::Int(v) => v,
            Scalar::Float(v) => v as i64,
        }
    }
}

/// Model hyper-parameters, derived from tensor shapes rather than trusted from a side file,
/// so a mismatched `config.json` cannot make us build the wrong graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// Vocabulary size (rows of the token embedding).
    pub n_vocab: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Number of mel bins the first convolution expects (80 for base, 128 for large-v3).
    pub n_mels: usize,
    /// Number of audio positions after the convolutions (1500 for 30 s).
    pub n_audio_ctx: usize,
    /// Number of learned text positions (448).
    pub n_text_ctx: usize,
    /// Encoder transformer layers.
    pub n_audio_layer: usize,
    /// Decoder transformer layers.
    pub n_text_layer: usize,
    /// Encoder attention heads.
    pub n_audio_head: usize,
    /// Decoder attention heads.
    pub n_text_head: usize,
}

/// The parsed content of a `model.bin`: f32 tensors under mapped names, scalars and the config.
///
/// Names follow the Hugging Face Whisper convention (`encoder.layers.0.fc1.weight`, ...),
/// except that the fused projections CTranslate2 stores are kept fused because one larger
/// matmul is faster than three small ones: `self_attn.qkv_proj` (q, k, v stacked on dim 0;
/// the k bias is stored as zeros) and `encoder_attn.kv_proj` (k, v stacked).
#[derive(Debug)]
pub struct Ct2Model {
    /// Spec name from the header (`WhisperSpec`).
    pub spec: String,
    /// Spec revision from the header.
    pub revision: u32,
    /// Float tensors, converted to f32, keyed by mapped name.
    pub tensors: HashMap<String, Tensor>,
    /// Rank-0 values keyed by their original CTranslate2 name.
    pub scalars: HashMap<String, Scalar>,
    /// Hyper-parameters derived from the tensors.
    pub config: ModelConfig,
    /// Matrices kept as raw f16 bits (row-major, with their shape) because the caller asked
    /// for them with [`Ct2Model::parse_with`]; they never exist as f32, which saves both the
    /// conversion and the memory.
    pub half: HashMap<String, (Arc<Vec<u16>>, Vec<usize>)>,
}

/// Bounds-checked little-endian cursor over the input bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Ct2Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(Ct2Error::Truncated {
            offset: self.pos,
            needed: n,
            len: self.buf.len(),
        })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Ct2Error> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Ct2Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Ct2Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, Ct2Error> {
        let at = self.pos;
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| Ct2Error::BadString(at))
    }
}

/// CTranslate2 `DataType` codes.
fn dtype_name(code: u8) -> &'static str {
    match code {
        0 => "float32",
        1 => "int8",
        2 => "int16",
        3 => "int32",
        4 => "float16",
        5 => "bfloat16",
        6 => "float8_e4m3",
        7 => "float8_e5m2",
        _ => "unknown",
    }
}

fn dtype_size(code: u8) -> Option<usize> {
    match code {
        0 | 3 => Some(4),
        2 | 4 | 5 => Some(2),
        1 | 6 | 7 => Some(1),
        _ => None,
    }
}

/// Convert raw little-endian bytes of a float dtype to f32 values.
fn to_f32(bytes: &[u8], dtype: u8) -> Vec<f32> {
    match dtype {
        0 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        4 => {
            // Reinterpreting through u16 keeps us independent of the slice's alignment;
            // the bulk conversion uses F16C on x86 when available.
            let halves: Vec<half::f16> =
                bytes.chunks_exact(2).map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect();
            let mut out = vec![0f32; halves.len()];
            half::slice::HalfFloatSliceExt::convert_to_f32_slice(&halves[..], &mut out);
            out
        }
        5 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
            .collect(),
        _ => unreachable!("only float dtypes reach to_f32"),
    }
}

fn scalar_of(bytes: &[u8], dtype: u8) -> Option<Scalar> {
    Some(match (dtype, bytes.len()) {
        (1, 1) => Scalar::Int(bytes[0] as i8 as i64),
        (2, 2) => Scalar::Int(i16::from_le_bytes([bytes[0], bytes[1]]) as i64),
        (3, 4) => Scalar::Int(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as i64),
        (0 | 4 | 5, _) => Scalar::Float(*to_f32(bytes, dtype).first()?),
        _ => return None,
    })
}

/// Map a CTranslate2 Whisper variable name onto the name the model code looks up.
///
/// Returns `None` for variables the model does not use (e.g. `decoder/alignment_heads`).
pub fn map_name(ct2: &str) -> Option<String> {
    let parts: Vec<&str> = ct2.split('/').collect();
    let side = match parts.first()? {
        &"encoder" => "encoder",
        &"decoder" => "decoder",
        _ => return None,
    };
    let p = &parts[1..];
    let leaf = |s: &str| match s {
        "gamma" | "weight" => Some("weight"),
        "beta" | "bias" => Some("bias"),
        "encodings" => Some("weight"),
        _ => None,
    };
    let mapped = match p {
        ["conv1", l] => format!("{side}.conv1.{}", leaf(l)?),
        ["conv2", l] => format!("{side}.conv2.{}", leaf(l)?),
        ["layer_norm", l] => format!("{side}.layer_norm.{}", leaf(l)?),
        ["embeddings", "weight"] => format!("{side}.embed_tokens.weight"),
        ["position_encodings", "encodings"] => format!("{side}.embed_positions.weight"),
        [layer, block, sub @ ..] if layer.starts_with("layer_") => {
            let i: usize = layer.strip_prefix("layer_")?.parse().ok()?;
            let base = format!("{side}.layers.{i}");
            let name = match (*block, sub) {
                ("self_attention", ["layer_norm", l]) => format!("self_attn_layer_norm.{}", leaf(l)?),
                ("self_attention", ["linear_0", l]) => format!("self_attn.qkv_proj.{}", leaf(l)?),
                ("self_attention", ["linear_1", l]) => format!("self_attn.out_proj.{}", leaf(l)?),
                ("attention", ["layer_norm", l]) => format!("encoder_attn_layer_norm.{}", leaf(l)?),
                ("attention", ["linear_0", l]) => format!("encoder_attn.q_proj.{}", leaf(l)?),
                ("attention", ["linear_1", l]) => format!("encoder_attn.kv_proj.{}", leaf(l)?),
                ("attention", ["linear_2", l]) => format!("encoder_attn.out_proj.{}", leaf(l)?),
                ("ffn", ["layer_norm", l]) => format!("final_layer_norm.{}", leaf(l)?),
                ("ffn", ["linear_0", l]) => format!("fc1.{}", leaf(l)?),
                ("ffn", ["linear_1", l]) => format!("fc2.{}", leaf(l)?),
                _ => return None,
            };
            format!("{base}.{name}")
        }
        _ => return None,
    };
    Some(mapped)
}

impl Ct2Model {
    /// Parse a complete `model.bin` held in memory.
    ///
    /// Tensors are converted one at a time, so peak memory is the input plus the f32 weights.
    pub fn parse(bytes: &[u8]) -> Result<Self, Ct2Error> {
        Self::parse_with(bytes, &|_| false)
    }

    /// Like [`Ct2Model::parse`], but matrices stored as f16 whose mapped name satisfies
    /// `keep_half` go to [`Ct2Model::half`] as raw bits instead of being converted.
    pub fn parse_with(bytes: &[u8], keep_half: &dyn Fn(&str) -> bool) -> Result<Self, Ct2Error> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.u32()?;
        if !(1..=6).contains(&version) {
            return Err(Ct2Error::UnsupportedVersion(version));
        }
        let (spec, revision) = if version >= 2 { (r.string()?, r.u32()?) } else { (String::new(), 1) };
        if !spec.is_empty() && spec != "WhisperSpec" {
            return Err(Ct2Error::NotWhisper(spec));
        }
        let count = r.u32()? as usize;
        let device = Device::Cpu;
        let mut raw_names: HashMap<String, String> = HashMap::new();
        let mut tensors = HashMap::new();
        let mut scalars = HashMap::new();
        let mut half = HashMap::new();
        for _ in 0..count {
            let name = r.string()?;
            let rank = r.u8()? as usize;
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(r.u32()? as usize);
            }
            let (dtype, nbytes) = if version >= 4 {
                let d = r.u8()?;
                (d, r.u32()? as usize)
            } else {
                // Old files store the item size; 4 and 2 byte items were floats in practice.
                let item = r.u8()?;
                let n = r.u32()? as usize;
                let d = match item {
                    4 => 0,
                    2 => 4,
                    _ => 1,
                };
                (d, n * item as usize)
            };
            let data = r.take(nbytes)?;
            let numel: usize = shape.iter().product();
            if rank == 0 {
                if let Some(s) = scalar_of(data, dtype) {
                    scalars.insert(name, s);
                }
                continue;
            }
            if dtype_size(dtype).is_some_and(|s| s * numel != nbytes) {
                return Err(Ct2Error::SizeMismatch { name, bytes: nbytes, shape, dtype });
            }
            // Variables the model does not read (alignment heads, quantization scales of
            // unused tensors, ...) are skipped whatever their type.
            let Some(mapped) = map_name(&name) else { continue };
            if !matches!(dtype, 0 | 4 | 5) {
                return Err(Ct2Error::Quantized { name, dtype, dtype_name: dtype_name(dtype) });
            }
            if dtype == 4 && rank == 2 && keep_half(&mapped) {
                let bits = Arc::new(data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect());
                raw_names.insert(name, mapped.clone());
                half.insert(mapped, (bits, shape));
                continue;
            }
            let t = Tensor::from_vec(to_f32(data, dtype), shape, &device)?;
            raw_names.insert(name, mapped.clone());
            tensors.insert(mapped, t);
        }
        if version >= 3 && r.pos < bytes.len() {
            let n = r.u32()?;
            for _ in 0..n {
                let alias = r.string()?;
                let target = r.string()?;
                // Aliases only matter if they name something the model reads and is not stored.
                if let (Some(a), Some(t)) = (map_name(&alias), raw_names.get(&target)) {
                    if !tensors.contains_key(&a) && !half.contains_key(&a) {
                        if let Some(v) = tensors.get(t).cloned() {
                            tensors.insert(a, v);
                        } else if let Some(v) = half.get(t).cloned() {
                            half.insert(a, v);
                        }
                    }
                }
            }
        }
        let mut shapes: HashMap<String, Vec<usize>> = tensors.iter().map(|(k, t)| (k.clone(), t.dims().to_vec())).collect();
        shapes.extend(half.iter().map(|(k, (_, s))| (k.clone(), s.clone())));
        let config = derive_config(&shapes, &scalars)?;
        Ok(Ct2Model { spec, revision, tensors, scalars, config, half })
    }

    /// Fetch a tensor by mapped name with a typed error when absent.
    pub fn get(&self, name: &str) -> Result<&Tensor, Ct2Error> {
        self.tensors.get(name).ok_or_else(|| Ct2Error::Missing(name.to_string()))
    }
}

fn dims_of(t: &HashMap<String, Vec<usize>>, name: &str) -> Result<Vec<usize>, Ct2Error> {
    t.get(name).cloned().ok_or_else(|| Ct2Error::Missing(name.to_string()))
}

fn count_layers(t: &HashMap<String, Vec<usize>>, side: &str) -> usize {
    (0..).take_while(|i| t.contains_key(&format!("{side}.layers.{i}.fc1.weight"))).count()
}

fn derive_config(t: &HashMap<String, Vec<usize>>, s: &HashMap<String, Scalar>) -> Result<ModelConfig, Ct2Error> {
    let emb = dims_of(t, "decoder.embed_tokens.weight")?;
    if emb.len() != 2 {
        return Err(Ct2Error::BadShape {
            name: "decoder.embed_tokens.weight".into(),
            shape: emb,
            expected: "[n_vocab, d_model]".into(),
        });
    }
    let (n_vocab, d_model) = (emb[0], emb[1]);
    let conv1 = dims_of(t, "encoder.conv1.weight")?;
    if conv1.len() != 3 || conv1[0] != d_model {
        return Err(Ct2Error::BadShape {
            name: "encoder.conv1.weight".into(),
            shape: conv1,
            expected: format!("[{d_model}, n_mels, 3]"),
        });
    }
    let n_mels = conv1[1];
    let n_text_ctx = dims_of(t, "decoder.embed_positions.weight")?[0];
    // Encoder positions are sinusoidal; exports usually store them, else Whisper's 1500.
    let n_audio_ctx = t.get("encoder.embed_positions.weight").map(|p| p[0]).unwrap_or(1500);
    let heads = |side: &str| {
        s.get(&format!("{side}/num_heads")).map(|v| v.as_i64() as usize).filter(|&h| h > 0 && d_model % h == 0)
            // Every released Whisper uses 64-wide heads.
            .unwrap_or(d_model / 64)
    };
    Ok(ModelConfig {
        n_vocab,
        d_model,
        n_mels,
        n_audio_ctx,
        n_text_ctx,
        n_audio_layer: count_layers(t, "encoder"),
        n_text_layer: count_layers(t, "decoder"),
        n_audio_head: heads("encoder"),
        n_text_head: heads("decoder"),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a CTranslate2 file in memory, so tests need no downloaded model.
    pub(crate) struct Builder {
        vars: Vec<(String, Vec<u32>, u8, Vec<u8>)>,
        aliases: Vec<(String, String)>,
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Builder { vars: vec![], aliases: vec![] }
        }
        pub(crate) fn f16(&mut self, name: &str, shape: &[u32], vals: &[f32]) -> &mut Self {
            let b = vals.iter().flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes()).collect();
            self.vars.push((name.into(), shape.to_vec(), 4, b));
            self
        }
        pub(crate) fn f32(&mut self, name: &str, shape: &[u32], vals: &[f32]) -> &mut Self {
            let b = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.vars.push((name.into(), shape.to_vec(), 0, b));
            self
        }
        pub(crate) fn raw(&mut self, name: &str, shape: &[u32], dtype: u8, bytes: Vec<u8>) -> &mut Self {
            self.vars.push((name.into(), shape.to_vec(), dtype, bytes));
            self
        }
        pub(crate) fn alias(&mut self, a: &str, t: &str) -> &mut Self {
            self.aliases.push((a.into(), t.into()));
            self
        }
        pub(crate) fn build(&self) -> Vec<u8> {
            let mut o = vec![];
            o.extend_from_slice(&6u32.to_le_bytes());
            put_str(&mut o, "WhisperSpec");
            o.extend_from_slice(&3u32.to_le_bytes());
            o.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
            for (n, s, d, b) in &self.vars {
                put_str(&mut o, n);
                o.push(s.len() as u8);
                for x in s {
                    o.extend_from_slice(&x.to_le_bytes());
                }
                o.push(*d);
                o.extend_from_slice(&(b.len() as u32).to_le_bytes());
                o.extend_from_slice(b);
            }
            o.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
            for (a, t) in &self.aliases {
                put_str(&mut o, a);
                put_str(&mut o, t);
            }
            o
        }
    }

    /// A structurally complete, very small Whisper (d_model 8, 2 heads, 1 layer per side).
    pub(crate) fn tiny_model() -> Vec<u8> {
        let d = 8u32;
        let mut b = Builder::new();
        let ramp = |n: usize| (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.05).collect::<Vec<_>>();
        b.f16("encoder/conv1/weight", &[d, 4, 3], &ramp((d * 12) as usize))
            .f16("encoder/conv1/bias", &[d], &ramp(d as usize))
            .f16("encoder/conv2/weight", &[d, d, 3], &ramp((d * d * 3) as usize))
            .f16("encoder/conv2/bias", &[d], &ramp(d as usize))
            .f32("encoder/position_encodings/encodings", &[6, d], &ramp((6 * d) as usize))
            .raw("encoder/num_heads", &[], 2, 2i16.to_le_bytes().to_vec())
            .raw("decoder/num_heads", &[], 2, 2i16.to_le_bytes().to_vec())
            .raw("decoder/alignment_heads", &[2, 2], 3, vec![0; 16])
            .f16("decoder/embeddings/weight", &[20, d], &ramp((20 * d) as usize))
            .f16("decoder/position_encodings/encodings", &[10, d], &ramp((10 * d) as usize));
        for side in ["encoder", "decoder"] {
            let l = format!("{side}/layer_0");
            b.f16(&format!("{side}/layer_norm/gamma"), &[d], &vec![1.0; d as usize])
                .f16(&format!("{side}/layer_norm/beta"), &[d], &vec![0.0; d as usize])
                .f16(&format!("{l}/self_attention/layer_norm/gamma"), &[d], &vec![1.0; d as usize])
                .f16(&format!("{l}/self_attention/layer_norm/beta"), &[d], &vec![0.0; d as usize])
                .f16(&format!("{l}/self_attention/linear_0/weight"), &[3 * d, d], &ramp((3 * d * d) as usize))
                .f16(&format!("{l}/self_attention/linear_0/bias"), &[3 * d], &ramp((3 * d) as usize))
                .f16(&format!("{l}/self_attention/linear_1/weight"), &[d, d], &ramp((d * d) as usize))
                .f16(&format!("{l}/self_attention/linear_1/bias"), &[d], &ramp(d as usize))
                .f16(&format!("{l}/ffn/layer_norm/gamma"), &[d], &vec![1.0; d as usize])
                .f16(&format!("{l}/ffn/layer_norm/beta"), &[d], &vec![0.0; d as usize])
                .f16(&format!("{l}/ffn/linear_0/weight"), &[4 * d, d], &ramp((4 * d * d) as usize))
                .f16(&format!("{l}/ffn/linear_0/bias"), &[4 * d], &ramp((4 * d) as usize))
                .f16(&format!("{l}/ffn/linear_1/weight"), &[d, 4 * d], &ramp((4 * d * d) as usize))
                .f16(&format!("{l}/ffn/linear_1/bias"), &[d], &ramp(d as usize));
        }
        let l = "decoder/layer_0/attention";
        b.f16(&format!("{l}/layer_norm/gamma"), &[d], &vec![1.0; d as usize])
            .f16(&format!("{l}/layer_norm/beta"), &[d], &vec![0.0; d as usize])
            .f16(&format!("{l}/linear_0/weight"), &[d, d], &ramp((d * d) as usize))
            .f16(&format!("{l}/linear_0/bias"), &[d], &ramp(d as usize))
            .f16(&format!("{l}/linear_1/weight"), &[2 * d, d], &ramp((2 * d * d) as usize))
            .f16(&format!("{l}/linear_1/bias"), &[2 * d], &ramp((2 * d) as usize))
            .f16(&format!("{l}/linear_2/weight"), &[d, d], &ramp((d * d) as usize))
            .f16(&format!("{l}/linear_2/bias"), &[d], &ramp(d as usize))
            .alias("decoder/projection/weight", "decoder/embeddings/weight");
        b.build()
    }

    #[test]
    fn parses_synthetic_model() {
        let bytes = tiny_model();
        let m = Ct2Model::parse(&bytes).unwrap();
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.revision, 3);
        assert_eq!(
            m.config,
            ModelConfig {
                n_vocab: 20,
                d_model: 8,
                n_mels: 4,
                n_audio_ctx: 6,
                n_text_ctx: 10,
                n_audio_layer: 1,
                n_text_layer: 1,
                n_audio_head: 2,
                n_text_head: 2,
            }
        );
        assert_eq!(m.scalars["encoder/num_heads"], Scalar::Int(2));
        let qkv = m.get("encoder.layers.0.self_attn.qkv_proj.weight").unwrap();
        assert_eq!(qkv.dims(), &[24, 8]);
        // f16 values come back as the f32 they approximate.
        let v: Vec<f32> = m.get("encoder.conv1.bias").unwrap().to_vec1().unwrap();
        assert!((v[0] + 0.15).abs() < 1e-3, "{v:?}");
        assert!(m.get("decoder.layers.0.encoder_attn.kv_proj.bias").is_ok());
        assert!(m.get("decoder.layers.0.final_layer_norm.weight").is_ok());
        assert!(m.half.is_empty());
        // Asked-for f16 matrices stay raw and are not converted.
        let m = Ct2Model::parse_with(&bytes, &|n| n.starts_with("decoder.") && n.ends_with("fc1.weight")).unwrap();
        let (bits, shape) = &m.half["decoder.layers.0.fc1.weight"];
        assert_eq!(shape, &vec![32, 8]);
        assert_eq!(half::f16::from_bits(bits[0]).to_f32(), half::f16::from_f32(-0.15).to_f32());
        assert!(m.get("decoder.layers.0.fc1.weight").is_err());
        assert_eq!(m.config.n_text_layer, 1);
    }

    #[test]
    fn refuses_quantized_weights() {
        let mut b = Builder::new();
        b.raw("encoder/conv1/weight", &[2, 2], 1, vec![1, 2, 3, 4]);
        match Ct2Model::parse(&b.build()) {
            Err(Ct2Error::Quantized { name, dtype_name, .. }) => {
                assert_eq!(name, "encoder/conv1/weight");
                assert_eq!(dtype_name, "int8");
            }
            other => panic!("expected Quantized, got {other:?}"),
        }
    }

    #[test]
    fn reports_truncation_and_bad_size() {
        let bytes = tiny_model();
        assert!(matches!(Ct2Model::parse(&bytes[..bytes.len() / 2]), Err(Ct2Error::Truncated { .. })));
        let mut b = Builder::new();
        b.raw("encoder/conv1/bias", &[4], 4, vec![0; 6]);
        assert!(matches!(Ct2Model::parse(&b.build()), Err(Ct2Error::SizeMismatch { .. })));
        assert!(matches!(Ct2Model::parse(&[9, 0, 0, 0]), Err(Ct2Error::UnsupportedVersion(9))));
    }

    #[test]
    fn maps_names() {
        assert_eq!(map_name("decoder/layer_3/attention/linear_1/weight").unwrap(), "decoder.layers.3.encoder_attn.kv_proj.weight");
        assert_eq!(map_name("encoder/layer_0/ffn/layer_norm/gamma").unwrap(), "encoder.layers.0.final_layer_norm.weight");
        assert_eq!(map_name("decoder/projection/weight"), None);
        assert_eq!(map_name("decoder/alignment_heads"), None);
    }
}
