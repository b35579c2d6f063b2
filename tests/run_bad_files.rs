//! `fderiv run` refuses every kind of bad `.npy` file with a typed error naming the
//! file, and exit code 2.

mod common;

use common::raw_header;
use fderiv::manifest::KernelMode;
use fderiv::run::{execute, npy, run, RunArgs, RunError};
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

/// Runs `softmax_last forward` on a file holding `bytes`; returns the error and path.
fn refuse(bytes: &[u8]) -> (RunError, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("X.npy");
    std::fs::write(&path, bytes).unwrap();
    let args = RunArgs::new(
        "softmax_last",
        KernelMode::Forward,
        &[("X", &path)],
        &dir.join("out"),
    );
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
    assert!(matches!(e, RunError::Oversized { .. }), "{e}");
    // A product that overflows u64 in a later, duplicate "shape" key (the last key wins,
    // as in Python) is caught before npyz multiplies it.
    let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1), 'shape': (4294967296, 4294967296, 4294967296), }";
    let (e, _) = refuse(&raw_header(dict));
    assert!(matches!(e, RunError::Oversized { .. }), "{e}");
    let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000, 1000000), }";
    let (e, _) = refuse(&raw_header(dict));
    assert!(matches!(e, RunError::TooLarge { .. }), "{e}");
}

#[test]
fn the_element_limit_is_checked_from_the_header_and_adjustable() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("X.npy");
    std::fs::write(&p, good()).unwrap(); // 1×2×3: 6 entries
    let e = npy::read_tensor_within(&p, 5).unwrap_err();
    assert!(matches!(e, RunError::TooLarge { limit: 5, .. }), "{e}");
    assert!(
        e.to_string()
            .contains("1×2×3 (6 entries), more than the limit of 5 (raise it with --max-elements)"),
        "{e}"
    );
    assert_eq!(npy::read_tensor_within(&p, 6).unwrap().dims(), [1, 2, 3]);
    // A header announcing 2^40 entries over a tiny file: refused by the limit before the
    // data part is even measured.
    let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1024, 1048576, 1024), }";
    let (e, _) = refuse(&raw_header(dict));
    assert!(
        matches!(
            e,
            RunError::TooLarge {
                limit: npy::DEFAULT_MAX_ELEMENTS,
                ..
            }
        ),
        "{e}"
    );
    // Through the command: --max-elements.
    let mut args = RunArgs::new(
        "softmax_last",
        KernelMode::Forward,
        &[("X", &p)],
        &dir.path().join("out"),
    );
    args.max_elements = 5;
    assert!(matches!(
        execute(&args).unwrap_err(),
        RunError::TooLarge { .. }
    ));
    args.max_elements = 6;
    assert_eq!(execute(&args).unwrap().len(), 1);
}

#[test]
fn a_result_larger_than_the_limit_is_refused_before_it_is_allocated() {
    // 1×N×0 · 1×0×N: empty inputs, an N×N result.
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("A.npy");
    let b = dir.path().join("B.npy");
    let empty = |dims| npy::encode_tensor(&Tensor::new(dims, vec![]).unwrap()).unwrap();
    std::fs::write(&a, empty([1, 1_000_000_000, 0])).unwrap();
    std::fs::write(&b, empty([1, 0, 1_000_000_000])).unwrap();
    let out = dir.path().join("out");
    let mut args = RunArgs::new("matmul", KernelMode::Forward, &[("A", &a), ("B", &b)], &out);
    let e = execute(&args).unwrap_err();
    assert!(matches!(e, RunError::ResultTooLarge { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("a result of shape 1×1000000000×1000000000"),
        "{e}"
    );
    assert_eq!(run(&args).unwrap_err().code, 2);
    assert!(!out.exists());
    // Within the limit the same shapes of zeros run (100×0 · 0×100 = a 100×100 zero).
    std::fs::write(&a, empty([1, 100, 0])).unwrap();
    std::fs::write(&b, empty([1, 0, 100])).unwrap();
    args.max_elements = 10_000;
    assert_eq!(execute(&args).unwrap()[0].1, [1, 100, 100]);
    args.max_elements = 9_999;
    args.force = true;
    assert!(matches!(
        execute(&args).unwrap_err(),
        RunError::ResultTooLarge { limit: 9_999, .. }
    ));
}

#[test]
fn long_or_deeply_nested_headers_are_refused_before_parsing() {
    let mut long = b"\x93NUMPY\x02\x00".to_vec();
    long.extend(u32::MAX.to_le_bytes());
    let (e, _) = refuse(&long);
    assert!(
        e.to_string()
            .contains("its header is 4294967295 bytes long; at most 65536"),
        "{e}"
    );
    let nested = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': {}1{}, }}",
        "(".repeat(20),
        ")".repeat(20)
    );
    let (e, _) = refuse(&raw_header(&nested));
    assert!(
        e.to_string().contains("nests brackets deeper than 4"),
        "{e}"
    );
    // Found by fuzzing: twelve unclosed brackets made the header parser backtrack for
    // 0.4 s (doubling per bracket); such headers are refused before it runs.
    let slow = format!(
        "{{'descr': {}'<f8', 'fortran_order': False, 'shape': (1, 1, 1), }}",
        "[".repeat(12)
    );
    let (e, _) = refuse(&raw_header(&slow));
    assert!(
        e.to_string().contains("nests brackets deeper than 4"),
        "{e}"
    );
    // A structured-dtype header (depth 4) still reaches the dtype check.
    let structured =
        "{'descr': [('a', '<f8', (2,))], 'fortran_order': False, 'shape': (1, 1, 1), }";
    let (e, _) = refuse(&raw_header(structured));
    assert!(matches!(e, RunError::Dtype { .. }), "{e}");
    let (e, _) = refuse(b"\x93NUMPY\x07\x00rest");
    assert!(
        e.to_string().contains("unsupported .npy version 7.0"),
        "{e}"
    );
}

#[test]
fn unreadable_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.npy");
    std::fs::write(&file, good()).unwrap();
    // A missing file, and a path through a file (ENOTDIR): unreadable even as root.
    let through_file = file.join("X.npy");
    for path in [Path::new("/nonexistent/fderiv/X.npy"), &through_file] {
        let e = refuse_path(path, &dir.path().join("out"));
        assert!(matches!(e, RunError::Read { .. }), "{e}");
        let expected = format!("cannot read {}: ", path.display());
        assert!(e.to_string().starts_with(&expected), "{e}");
    }
    // A file without read permission (meaningful only when not running as root).
    let locked = dir.path().join("locked.npy");
    std::fs::write(&locked, good()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::File::open(&locked).is_err() {
            let e = refuse_path(&locked, &dir.path().join("out"));
            assert!(matches!(e, RunError::Read { .. }), "{e}");
        }
    }
}

#[test]
fn directories_and_other_non_files_are_refused_as_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let e = refuse_path(dir.path(), &dir.path().join("out"));
    assert!(matches!(e, RunError::InputNotFile { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("{} is not a regular file", dir.path().display())
    );
    #[cfg(unix)]
    {
        let dev = Path::new("/dev/null");
        let e = refuse_path(dev, &dir.path().join("out"));
        assert!(matches!(e, RunError::InputNotFile { .. }), "{e}");
    }
}

#[cfg(unix)]
#[test]
fn symlink_loops_and_dangling_links_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.npy");
    let b = dir.path().join("b.npy");
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    let dangling = dir.path().join("dangling.npy");
    std::os::unix::fs::symlink(dir.path().join("missing.npy"), &dangling).unwrap();
    for link in [&a, &dangling] {
        let e = refuse_path(link, &dir.path().join("out"));
        assert!(matches!(e, RunError::BrokenSymlink { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("symbolic link that does not resolve"),
            "{e}"
        );
    }
    // A link to a good file is read as the file.
    let good_link = dir.path().join("good_link.npy");
    std::fs::write(dir.path().join("good.npy"), good()).unwrap();
    std::os::unix::fs::symlink(dir.path().join("good.npy"), &good_link).unwrap();
    assert_eq!(npy::read_tensor(&good_link).unwrap().dims(), [1, 2, 3]);
}

/// Runs `softmax_last forward` reading X from `path`; returns the error after checking
/// its exit code (2) and that nothing was written.
fn refuse_path(path: &Path, out: &Path) -> RunError {
    let args = RunArgs::new("softmax_last", KernelMode::Forward, &[("X", path)], out);
    let e = execute(&args).unwrap_err();
    assert_eq!(run(&args).unwrap_err().code, 2, "{e}");
    assert!(!out.exists(), "nothing is written on {e}");
    e
}
