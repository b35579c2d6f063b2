//! Writing the outputs: `DIR/NAME.npy`, each whole or not at all (a temporary file in
//! DIR, fsynced, then renamed into place), never over an existing file without
//! `--force`.

use super::{npy, RunError};
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where output `name` goes.
pub fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.npy"))
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Write {
        path: path.into(),
        source,
    }
}

/// Refuses, before anything is computed or written, two outputs that would land on
/// the same file (names equal up to case count as equal, since some file systems
/// ignore case), an output path that exists and is not a regular file, or that exists
/// at all without `force`.
pub fn check_targets(dir: &Path, names: &[String], force: bool) -> Result<(), RunError> {
    for (i, name) in names.iter().enumerate() {
        if let Some(other) = names[..i]
            .iter()
            .find(|o| o.to_lowercase() == name.to_lowercase())
        {
            return Err(RunError::SamePath {
                first: other.clone(),
                second: name.clone(),
                path: path_of(dir, name),
            });
        }
    }
    for name in names {
        let path = path_of(dir, name);
        match std::fs::metadata(&path) {
            Ok(m) if !m.is_file() => return Err(RunError::OutputNotFile { path }),
            Ok(_) if !force => return Err(RunError::OutputExists { path }),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_error(&path)(e)),
        }
    }
    Ok(())
}

/// Writes every output into `dir` (created if missing) and returns the paths written.
/// All files are staged (written and fsynced under temporary names) before the first
/// is renamed into place; a failure while staging leaves no file behind.
pub fn write_all(
    dir: &Path,
    outputs: &BTreeMap<String, Tensor<f64>>,
    force: bool,
) -> Result<Vec<PathBuf>, RunError> {
    let names: Vec<String> = outputs.keys().cloned().collect();
    check_targets(dir, &names, force)?;
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    let mut staged = Vec::new();
    for (name, t) in outputs {
        let path = path_of(dir, name);
        let bytes = npy::encode_tensor(t).map_err(write_error(&path))?;
        let mut tmp = temp_builder()
            .tempfile_in(dir)
            .map_err(write_error(&path))?;
        tmp.write_all(&bytes).map_err(write_error(&path))?;
        tmp.as_file().sync_all().map_err(write_error(&path))?;
        staged.push((tmp, path));
    }
    let mut written = Vec::new();
    for (tmp, path) in staged {
        let persisted = if force {
            tmp.persist(&path)
        } else {
            tmp.persist_noclobber(&path)
        };
        match persisted {
            Ok(_) => written.push(path),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RunError::OutputExists { path })
            }
            Err(e) => return Err(write_error(&path)(e.error)),
        }
    }
    sync_dir(dir)?;
    Ok(written)
}

/// Temporary files named `.fderiv-*.npy.part`, readable like ordinary outputs.
fn temp_builder() -> tempfile::Builder<'static, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(".fderiv-").suffix(".npy.part");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o644));
    }
    b
}

/// Makes the renames durable (fsync of the directory, where the platform allows it).
fn sync_dir(dir: &Path) -> Result<(), RunError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_error(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_outputs_on_one_path_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        for pair in [["gA", "gA"], ["gA", "ga"]] {
            let names: Vec<String> = pair.iter().map(|s| s.to_string()).collect();
            let e = check_targets(&out, &names, true).unwrap_err();
            assert!(matches!(e, RunError::SamePath { .. }), "{e}");
            assert!(e.to_string().contains("outputs gA and"), "{e}");
            let t = Tensor::new([1, 1, 1], vec![1.0]).unwrap();
            let outputs: BTreeMap<String, Tensor<f64>> =
                names.iter().map(|n| (n.clone(), t.clone())).collect();
            if outputs.len() == 2 {
                assert!(write_all(&out, &outputs, true).is_err());
                assert!(!out.exists());
            }
        }
        let distinct = vec!["gA".to_string(), "gB".to_string()];
        assert!(check_targets(&out, &distinct, false).is_ok());
    }
}
