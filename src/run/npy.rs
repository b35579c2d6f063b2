//! Reading and encoding NumPy `.npy` files of rank-3 float64 arrays, with `npyz`.
//!
//! Reading is strict: float64 only (either byte order), C order only, rank 3 (or 2,
//! read as 1×m×n, where the kernel declares h = 1),
//! and the data part must be exactly as long as the shape says.

use super::RunError;
use crate::tensor::{checked_size, Dims, Tensor};
use npyz::{DType, NpyFile, NpyHeader, Order, TypeChar, WriterBuilder};
use std::io::Cursor;
use std::path::Path;

/// Reads a C-order float64 h×m×n array from `path`.
pub fn read_tensor(path: &Path) -> Result<Tensor<f64>, RunError> {
    match read_array(path)? {
        (t, 3) => Ok(t),
        (t, _) => Err(RunError::Rank {
            path: path.into(),
            shape: t.dims()[1..].iter().map(|d| *d as u64).collect(),
        }),
    }
}

/// Reads a C-order float64 array of rank 3 (h×m×n) or 2 (m×n, returned as 1×m×n)
/// from `path`; returns it with its rank in the file.
pub fn read_array(path: &Path) -> Result<(Tensor<f64>, usize), RunError> {
    let bytes = std::fs::read(path).map_err(|source| RunError::Read {
        path: path.into(),
        source,
    })?;
    let mut cursor = Cursor::new(&bytes[..]);
    let header = parse_header(&mut cursor, path)?;
    let offset = usize::try_from(cursor.position()).unwrap_or(bytes.len());
    let (dims, rank) = check_header(&header, path)?;
    let expected = checked_size(dims)
        .ok()
        .and_then(|n| n.checked_mul(8))
        .ok_or_else(|| RunError::Oversized {
            path: path.into(),
            shape: header.shape().to_vec(),
        })?;
    let found = bytes.len() - offset;
    if found < expected {
        return Err(RunError::Truncated {
            path: path.into(),
            expected,
            found,
        });
    }
    if found > expected {
        return Err(RunError::TrailingBytes {
            path: path.into(),
            extra: found - expected,
        });
    }
    let not_npy = |e: std::io::Error| RunError::NotNpy {
        path: path.into(),
        reason: e.to_string(),
    };
    let data: Vec<f64> = NpyFile::with_header(header, &bytes[offset..])
        .into_vec()
        .map_err(not_npy)?;
    let t = Tensor::new(dims, data).map_err(|e| RunError::NotNpy {
        path: path.into(),
        reason: e.to_string(),
    })?;
    Ok((t, rank))
}

/// Parses the header. `npyz` computes the element count with an unchecked product, so
/// a header whose shape overflows `u64` is caught here instead of panicking.
fn parse_header(cursor: &mut Cursor<&[u8]>, path: &Path) -> Result<NpyHeader, RunError> {
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        NpyHeader::from_reader(&mut *cursor)
    }));
    match parsed {
        Ok(Ok(h)) => Ok(h),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(RunError::NotNpy {
            path: path.into(),
            reason: "the file ends inside the header".into(),
        }),
        Ok(Err(e)) => Err(RunError::NotNpy {
            path: path.into(),
            reason: e.to_string(),
        }),
        Err(_) => Err(RunError::NotNpy {
            path: path.into(),
            reason: "the header's shape is too large".into(),
        }),
    }
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
