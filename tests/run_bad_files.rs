//! `fderiv run` refuses every kind of bad `.npy` file with a typed error naming the
//! file, and exit code 2.

use fderiv::manifest::KernelMode;
use fderiv::run::{execute, npy, run, InputSpec, RunArgs, RunError};
use fderiv::tensor::Tensor;
use npyz::{Order, WriterBuilder};
use std::path::{Path, PathBuf};

fn good() -> Vec<u8> {
    let t = Tensor::new([1, 2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    npy::encode_tensor(&t).unwrap()
}

/// A `.npy` file of `data` with any dtype, shape and order.
fn npy_of<T: npyz::AutoSerialize + Copy>(shape: &[u64], order: Order, data: &[T]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .order(order)
        .writer(&mut buf)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
    buf
}

/// A version-1 `.npy` header with the given dict text, padded as NumPy pads it.
fn raw_header(dict: &str) -> Vec<u8> {
    let mut text = dict.to_string();
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((text.len() as u16).to_le_bytes());
    out.extend(text.as_bytes());
    out
}

/// Runs `softmax_last forward` on a file holding `bytes`; returns the error and path.
fn refuse(bytes: &[u8]) -> (RunError, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("X.npy");
    std::fs::write(&path, bytes).unwrap();
    let args = RunArgs {
        kernel: "softmax_last".into(),
        mode: KernelMode::Forward,
        inputs: vec![InputSpec {
            name: "X".into(),
            path: path.clone(),
        }],
        out: dir.join("out"),
        force: false,
        manifest: None,
    };
    let e = execute(&args).unwrap_err();
    assert!(!dir.join("out").exists(), "nothing is written on {e}");
    assert_eq!(run(&args).unwrap_err().code, 2, "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
    (e, path)
}

#[test]
fn the_good_file_passes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    std::fs::write(&p, good()).unwrap();
    assert_eq!(npy::read_tensor(&p).unwrap().dims(), [1, 2, 3]);
}

#[test]
fn big_endian_float64_is_read() {
    let mut bytes = raw_header("{'descr': '>f8', 'fortran_order': False, 'shape': (1, 1, 2), }");
    bytes.extend(1.5f64.to_be_bytes());
    bytes.extend((-2.0f64).to_be_bytes());
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    std::fs::write(&p, bytes).unwrap();
    assert_eq!(npy::read_tensor(&p).unwrap().data(), [1.5, -2.0]);
}

#[test]
fn non_float64_dtypes_are_refused() {
    let (e, _) = refuse(&npy_of(&[1, 2, 3], Order::C, &[1f32; 6]));
    assert!(
        matches!(e, RunError::Dtype { ref dtype, .. } if dtype == "'<f4'"),
        "{e}"
    );
    let (e, _) = refuse(&npy_of(&[1, 2, 3], Order::C, &[1i64; 6]));
    assert!(
        e.to_string().contains("'<i8'; fderiv run needs float64"),
        "{e}"
    );
}

#[test]
fn fortran_order_is_refused() {
    let (e, _) = refuse(&npy_of(&[1, 2, 3], Order::Fortran, &[1f64; 6]));
    assert!(matches!(e, RunError::FortranOrder { .. }), "{e}");
    assert!(e.to_string().contains("Fortran order"));
}

#[test]
fn wrong_ranks_are_refused() {
    for shape in [&[6u64][..], &[2, 3], &[1, 1, 2, 3]] {
        let (e, _) = refuse(&npy_of(shape, Order::C, &[1f64; 6]));
        assert!(matches!(e, RunError::Rank { .. }), "{e}");
        assert!(e.to_string().contains("needs rank 3"), "{e}");
    }
}

#[test]
fn truncated_and_padded_files_are_refused() {
    let g = good();
    let (e, _) = refuse(&g[..g.len() - 3]);
    assert!(
        matches!(
            e,
            RunError::Truncated {
                expected: 48,
                found: 45,
                ..
            }
        ),
        "{e}"
    );
    let (e, _) = refuse(&g[..40]);
    assert!(matches!(e, RunError::NotNpy { .. }), "{e}");
    assert!(e.to_string().contains("ends inside the header"), "{e}");
    let mut long = g.clone();
    long.extend([0u8; 8]);
    let (e, _) = refuse(&long);
    assert!(matches!(e, RunError::TrailingBytes { extra: 8, .. }), "{e}");
}

#[test]
fn garbage_and_empty_files_are_not_npy() {
    let (e, _) = refuse(b"this is not a numpy file at all, just text\n");
    assert!(matches!(e, RunError::NotNpy { .. }), "{e}");
    let (e, _) = refuse(b"");
    assert!(matches!(e, RunError::NotNpy { .. }), "{e}");
}

#[test]
fn absurd_shapes_are_refused_without_panicking() {
    let dict =
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }";
    let (e, _) = refuse(&raw_header(dict));
    assert!(
        matches!(e, RunError::NotNpy { .. } | RunError::Oversized { .. }),
        "{e}"
    );
    let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000, 1000000), }";
    let (e, _) = refuse(&raw_header(dict));
    assert!(
        matches!(e, RunError::Oversized { .. } | RunError::Truncated { .. }),
        "{e}"
    );
}

#[test]
fn unreadable_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for path in [Path::new("/nonexistent/fderiv/X.npy"), dir.path()] {
        let args = RunArgs {
            kernel: "softmax_last".into(),
            mode: KernelMode::Forward,
            inputs: vec![InputSpec {
                name: "X".into(),
                path: path.into(),
            }],
            out: dir.path().join("out"),
            force: false,
            manifest: None,
        };
        let e = execute(&args).unwrap_err();
        assert!(matches!(e, RunError::Read { .. }), "{e}");
        let expected = format!("cannot read {}: ", path.display());
        assert!(e.to_string().starts_with(&expected), "{e}");
        assert_eq!(run(&args).unwrap_err().code, 2);
    }
}
