//! Every generated kernel's two copies of its steps (`runtime::multiversion!`: AVX2 +
//! FMA, and portable) give the same bits. One test: the switch is process-wide.

use fderiv::bench::tensors;
use fderiv::kernels::{self, runtime, runtime::Tensor3};

/// The first (output, entry) whose bits differ, if any.
fn first_difference(a: &[Tensor3], b: &[Tensor3]) -> Option<(usize, usize)> {
    a.iter().zip(b).enumerate().find_map(|(o, (x, y))| {
        let bits = |t: &Tensor3| t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let (bx, by) = (bits(x), bits(y));
        (x.dims != y.dims || bx != by)
            .then(|| (o, bx.iter().zip(&by).take_while(|(p, q)| p == q).count()))
    })
}

#[test]
fn the_vector_and_portable_copies_give_the_same_bits() {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        assert!(runtime::vector_copies(), "the AVX2 copies are not in use");
    }
    for entry in kernels::KERNELS {
        // Rows of 37 values leave tails after every 8-value chunk.
        let shape: Vec<usize> = entry
            .dims
            .iter()
            .map(|d| if *d == "n" { 37 } else { 3 })
            .collect();
        let (ins, _) = tensors(entry, &shape).unwrap();
        let refs: Vec<&Tensor3> = ins.iter().collect();
        runtime::set_portable_only(false);
        let vector = (entry.run)(&refs).unwrap();
        runtime::set_portable_only(true);
        assert!(!runtime::vector_copies());
        let portable = (entry.run)(&refs).unwrap();
        runtime::set_portable_only(false);
        assert_eq!(first_difference(&vector, &portable), None, "{}", entry.name);

        // The comparison sees one flipped low bit of one entry.
        let mut corrupted = portable.clone();
        let last = corrupted.len() - 1;
        let at = corrupted[last].data.len() / 2;
        let v = &mut corrupted[last].data[at];
        *v = f64::from_bits(v.to_bits() ^ 1);
        assert_eq!(
            first_difference(&vector, &corrupted),
            Some((last, at)),
            "{}",
            entry.name
        );
    }
}
