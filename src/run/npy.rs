//! Reading and encoding NumPy `.npy` files of rank-3 float64 arrays, with `npyz`.
//!
//! Reading is strict: float64 only (either byte order), C order only, rank 3 (or 2,
//! read as 1×m×n, where the kernel declares h = 1), and the data part must be exactly as long as the shape says. Nothing sized by the
//! file is allocated before the header has been checked: the header is at most
//! [`MAX_HEADER_BYTES`] long and nests at most [`MAX_HEADER_DEPTH`] brackets, its
//! shape's product must fit in `u64`, and the tensor it announces must have at most
//! `max_elements` entries (`run --max-elements`, default [`DEFAULT_MAX_ELEMENTS`]).

use super::RunError;
use crate::tensor::{Dims, Tensor};
use npyz::{DType, NpyFile, NpyHeader, Order, TypeChar, WriterBuilder};
use std::io::{Cursor, Read};
use std::path::Path;

/// The default for the largest tensor an input header may announce: 2^27 entries
/// (1 GiB of float64).
pub const DEFAULT_MAX_ELEMENTS: u64 = 1 << 27;

/// The longest `.npy` header accepted, in bytes (NumPy writes fewer than 200 for a
/// rank-3 array; its own reader refuses more than 10 000 by default).
pub const MAX_HEADER_BYTES: usize = 1 << 16;

/// The deepest nesting of brackets accepted in a header: a float64 header needs 2 (the
/// dict and the shape tuple), a structured dtype 4. The header parser backtracks
/// exponentially in the nesting of unclosed brackets (fuzzing found 12 unclosed `[`
/// taking 0.4 s), so the bound is tight.
pub const MAX_HEADER_DEPTH: usize = 4;

/// Reads a C-order float64 h×m×n array from `path`, within [`DEFAULT_MAX_ELEMENTS`].
pub fn read_tensor(path: &Path) -> Result<Tensor<f64>, RunError> {
    read_tensor_within(path, DEFAULT_MAX_ELEMENTS)
}

/// Reads a C-order float64 h×m×n array of at most `max_elements` entries from `path`.
pub fn read_tensor_within(path: &Path, max_elements: u64) -> Result<Tensor<f64>, RunError> {
    rank3(path, read_array_within(path, max_elements)?)
}

/// Reads a C-order float64 array of rank 3 (h×m×n) or 2 (m×n, returned as 1×m×n)
/// from `path`, within [`DEFAULT_MAX_ELEMENTS`]; returns it with its rank in the file.
pub fn read_array(path: &Path) -> Result<(Tensor<f64>, usize), RunError> {
    read_array_within(path, DEFAULT_MAX_ELEMENTS)
}

/// [`read_array`] with at most `max_elements` entries. A path that is not a regular
/// file, or a symbolic link that does not resolve, is refused before it is opened.
pub fn read_array_within(path: &Path, max_elements: u64) -> Result<(Tensor<f64>, usize), RunError> {
    let read_err = |source| RunError::Read {
        path: path.into(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(source) => {
            let symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
            return Err(if symlink {
                RunError::BrokenSymlink {
                    path: path.into(),
                    source,
                }
            } else {
                read_err(source)
            });
        }
    };
    if !meta.is_file() {
        return Err(RunError::InputNotFile { path: path.into() });
    }
    let file = std::fs::File::open(path).map_err(read_err)?;
    decode(
        &mut std::io::BufReader::new(file),
        meta.len(),
        path,
        max_elements,
    )
}

/// Decodes the bytes of a `.npy` file as [`read_tensor`] does; `path` only names it in
/// errors.
pub fn decode_tensor(
    bytes: &[u8],
    path: &Path,
    max_elements: u64,
) -> Result<Tensor<f64>, RunError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    rank3(
        path,
        decode(&mut Cursor::new(bytes), len, path, max_elements)?,
    )
}

/// The tensor of a rank-3 file; a rank-2 file is refused with its m×n shape.
fn rank3(path: &Path, (t, rank): (Tensor<f64>, usize)) -> Result<Tensor<f64>, RunError> {
    match rank {
        3 => Ok(t),
        _ => Err(RunError::Rank {
            path: path.into(),
            shape: t.dims()[1..].iter().map(|d| *d as u64).collect(),
        }),
    }
}

/// Reads the header from `r` (a file of `len` bytes), checks it, then reads exactly the
/// data it announces.
fn decode(
    r: &mut impl Read,
    len: u64,
    path: &Path,
    max_elements: u64,
) -> Result<(Tensor<f64>, usize), RunError> {
    let not_npy = |reason: String| RunError::NotNpy {
        path: path.into(),
        reason,
    };
    let prefix = read_header_bytes(r, path)?;
    let shape = announced_shape(&prefix, path)?;
    let header = NpyHeader::from_reader(&prefix[..]).map_err(|e| not_npy(e.to_string()))?;
    let (dims, rank) = check_header(&header, path)?;
    let elements = shape.iter().product::<u64>();
    if elements > max_elements {
        return Err(RunError::TooLarge {
            path: path.into(),
            shape,
            limit: max_elements,
        });
    }
    // elements ≤ max_elements: the products below fit.
    let expected = (elements * 8) as usize;
    let found = len.saturating_sub(prefix.len() as u64);
    if found < expected as u64 {
        return Err(RunError::Truncated {
            path: path.into(),
            expected,
            found: found as usize,
        });
    }
    if found > expected as u64 {
        return Err(RunError::TrailingBytes {
            path: path.into(),
            extra: usize::try_from(found - expected as u64).unwrap_or(usize::MAX),
        });
    }
    let mut data = vec![0u8; expected];
    r.read_exact(&mut data).map_err(|source| RunError::Read {
        path: path.into(),
        source,
    })?;
    let values: Vec<f64> = NpyFile::with_header(header, &data[..])
        .into_vec()
        .map_err(|e| not_npy(e.to_string()))?;
    let t = Tensor::new(dims, values).map_err(|e| not_npy(e.to_string()))?;
    Ok((t, rank))
}

/// The magic, version, header length and header text, bounded by [`MAX_HEADER_BYTES`].
fn read_header_bytes(r: &mut impl Read, path: &Path) -> Result<Vec<u8>, RunError> {
    let not_npy = |reason: &str| RunError::NotNpy {
        path: path.into(),
        reason: reason.into(),
    };
    let eof = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => not_npy("the file ends inside the header"),
        _ => RunError::Read {
            path: path.into(),
            source: e,
        },
    };
    let mut prefix = vec![0u8; 8];
    r.read_exact(&mut prefix).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => not_npy("magic not found for NPY file"),
        _ => eof(e),
    })?;
    if &prefix[..6] != b"\x93NUMPY" {
        return Err(not_npy("magic not found for NPY file"));
    }
    let width = match prefix[6] {
        1 => 2,
        2 | 3 => 4,
        v => {
            return Err(not_npy(&format!(
                "unsupported .npy version {v}.{}",
                prefix[7]
            )))
        }
    };
    let mut size = [0u8; 4];
    r.read_exact(&mut size[..width]).map_err(eof)?;
    prefix.extend_from_slice(&size[..width]);
    let header_len = u32::from_le_bytes(size) as usize;
    if header_len > MAX_HEADER_BYTES {
        return Err(not_npy(&format!(
            "its header is {header_len} bytes long; at most {MAX_HEADER_BYTES} are accepted"
        )));
    }
    let start = prefix.len();
    prefix.resize(start + header_len, 0);
    r.read_exact(&mut prefix[start..]).map_err(eof)?;
    Ok(prefix)
}

/// The shape the header announces, checked before `npyz` sees it: brackets nest at
/// most [`MAX_HEADER_DEPTH`] deep (the header parsers recurse and backtrack) and the shape's
/// product fits in `u64` (`npyz` multiplies unchecked). A header without a readable
/// shape is left to `npyz`, which names what is wrong.
fn announced_shape(prefix: &[u8], path: &Path) -> Result<Vec<u64>, RunError> {
    let not_npy = |reason: String| RunError::NotNpy {
        path: path.into(),
        reason,
    };
    let width = if prefix[6] == 1 { 2 } else { 4 };
    let text = &prefix[8 + width..];
    let mut depth = 0usize;
    for b in text {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_HEADER_DEPTH {
            return Err(not_npy(format!(
                "its header nests brackets deeper than {MAX_HEADER_DEPTH}"
            )));
        }
    }
    let text = std::str::from_utf8(text.strip_suffix(b"\n").unwrap_or(text))
        .map_err(|_| not_npy("its header is not UTF-8".into()))?;
    let value: py_literal::Value = text
        .parse()
        .map_err(|e| not_npy(format!("could not parse its header: {e}")))?;
    let shape = match &value {
        // The last key wins, as in Python and in `npyz`.
        py_literal::Value::Dict(entries) => entries.iter().rev().find_map(|(k, v)| match k {
            py_literal::Value::String(k) if k == "shape" => Some(v),
            _ => None,
        }),
        _ => None,
    };
    let items = match shape {
        Some(py_literal::Value::Tuple(items) | py_literal::Value::List(items)) => items,
        _ => return Err(not_npy("its header has no shape tuple".into())),
    };
    let dims: Vec<u64> = items
        .iter()
        .map(|v| match v {
            py_literal::Value::Integer(i) => u64::try_from(i).ok(),
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| not_npy("its shape holds an entry that is not a size".into()))?;
    if dims
        .iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(*d))
        .is_none()
    {
        return Err(RunError::Oversized {
            path: path.into(),
            shape: dims,
        });
    }
    Ok(dims)
}

/// Checks dtype, order and rank (2 or 3); returns the dims (1×m×n for rank 2) and
/// the rank.
fn check_header(header: &NpyHeader, path: &Path) -> Result<(Dims, usize), RunError> {
    match header.dtype() {
        DType::Plain(t) if t.type_char() == TypeChar::Float && t.size_field() == 8 => {}
        other => {
            return Err(RunError::Dtype {
                path: path.into(),
                dtype: other.descr(),
            })
        }
    }
    let shape = header.shape();
    if shape.len() != 3 && shape.len() != 2 {
        return Err(RunError::Rank {
            path: path.into(),
            shape: shape.to_vec(),
        });
    }
    // Fortran order is only a different layout when two axes have length > 1; NumPy
    // itself writes C order for such arrays, but a header that says Fortran is refused
    // regardless, so the rule is simple to state.
    if header.order() == Order::Fortran {
        return Err(RunError::FortranOrder { path: path.into() });
    }
    let oversized = || RunError::Oversized {
        path: path.into(),
        shape: shape.to_vec(),
    };
    let dim = |i: usize| usize::try_from(shape[i]).map_err(|_| oversized());
    Ok(match shape.len() {
        2 => ([1, dim(0)?, dim(1)?], 2),
        _ => ([dim(0)?, dim(1)?, dim(2)?], 3),
    })
}

/// The bytes of a `.npy` file (little-endian float64, C order) holding `t`.
pub fn encode_tensor(t: &Tensor<f64>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let shape = t.dims().map(|d| d as u64);
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(&mut buf)
        .begin_nd()?;
    writer.extend(t.data().iter().copied())?;
    writer.finish()?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_read_round_trips_including_empty_and_nan() {
        let dir = tempfile::tempdir().unwrap();
        for (dims, data) in [
            (
                [2, 1, 3],
                vec![1.5, -0.0, f64::NAN, f64::INFINITY, 1e-310, 7.0],
            ),
            ([2, 0, 3], vec![]),
        ] {
            let t = Tensor::new(dims, data).unwrap();
            let path = dir.path().join("t.npy");
            std::fs::write(&path, encode_tensor(&t).unwrap()).unwrap();
            let back = read_tensor(&path).unwrap();
            assert_eq!(back.dims(), dims);
            let bits = |x: &Tensor<f64>| x.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&back), bits(&t));
        }
    }
}
