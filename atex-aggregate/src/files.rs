//! Moving a result's uploaded files from atex-exec's artifacts directory
//! into the store (`files/<platform>/<test>/<subtest>/<file>`), compressing
//! them one by one when asked.
//!
//! atex-exec keeps a test's files under `<artifacts>/files/` and a
//! subtest's under `<artifacts>/files/<subtest>/` (ATEX's per-test
//! layout); a result's `files` are relative to that directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::store::Compression;

/// Turn a name into a relative path that stays inside its directory, as
/// ATEX's `normpath(name.lstrip("/"))` and atex-exec do: leading and
/// repeated `/` and `.` components dropped, `..` removing the component
/// before it; `None` when `..` would climb out or the name holds a NUL.
///
/// ```
/// use atex_aggregate::files::normalize;
/// assert_eq!(normalize("/tests//./a").as_deref(), Some("tests/a"));
/// assert_eq!(normalize("a/../b").as_deref(), Some("b"));
/// assert_eq!(normalize("../x"), None);
/// ```
pub fn normalize(name: &str) -> Option<String> {
    if name.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            _ => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// How uploaded files are stored.
#[derive(Debug, Clone, Default)]
pub struct FilePolicy {
    /// Compress regular files with this (`None`: store them as they are).
    pub compress: Option<Compression>,
    /// Base names never compressed (ATEX's `compress_files_exclude`).
    pub exclude: Vec<String>,
}

/// The outcome of storing one result's files.
#[derive(Debug, Default)]
pub struct Stored {
    /// The stored names, in the result's order (a compressed file's name
    /// has the suffix added).
    pub names: Vec<String>,
    /// Problems met (a missing file, a refused name), for warnings; the
    /// name is then kept as reported.
    pub problems: Vec<String>,
}

/// How many bytes of a failed result's output go into JUnit.
pub const OUTPUT_TAIL: u64 = 64 * 1024;

/// The last [`OUTPUT_TAIL`] bytes of the file at `path`, if it is a
/// readable regular file.
pub fn tail(path: &Path) -> Option<Vec<u8>> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len > OUTPUT_TAIL {
        file.seek(SeekFrom::Start(len - OUTPUT_TAIL)).ok()?;
    }
    let mut buf = Vec::new();
    file.take(OUTPUT_TAIL).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Move `files` from `src_dir` to `dst_dir` following `policy`.
///
/// A file already in the store (listed by an earlier result: the same
/// output linked twice, a file uploaded in parts) gets the new content
/// appended, which is what ATEX's moving the whole directory at the end
/// of the test gives; a compressed one gets a new gzip member or xz stream.
/// A file missing from `src_dir` but present in the store is simply
/// listed.
pub fn store(
    src_dir: &Path,
    dst_dir: &Path,
    files: &[impl AsRef<str>],
    policy: &FilePolicy,
) -> Stored {
    let mut stored = Stored {
        names: Vec::with_capacity(files.len()),
        problems: Vec::new(),
    };
    for name in files {
        let name = name.as_ref();
        match store_one(src_dir, dst_dir, name, policy) {
            Ok(stored_name) => stored.names.push(stored_name),
            Err(problem) => {
                stored.problems.push(problem);
                stored.names.push(name.to_owned());
            }
        }
    }
    stored
}

fn store_one(
    src_dir: &Path,
    dst_dir: &Path,
    name: &str,
    policy: &FilePolicy,
) -> Result<String, String> {
    let rel = normalize(name)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| format!("file name {name:?} escapes its directory or names no file"))?;
    let src = src_dir.join(&rel);
    let dst = dst_dir.join(&rel);
    let meta = fs::symlink_metadata(&src);
    let base = rel.rsplit('/').next().unwrap_or(&rel);
    let compress = policy
        .compress
        .filter(|_| !policy.exclude.iter().any(|e| e == base))
        .filter(|_| meta.as_ref().map(|m| m.is_file()).unwrap_or(true));
    let (dst, stored_name) = match compress {
        Some(c) => (suffixed(&dst, c.suffix()), format!("{rel}{}", c.suffix())),
        None => (dst, rel.clone()),
    };
    let meta = match meta {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if fs::symlink_metadata(&dst).is_ok() {
                return Ok(stored_name);
            }
            return Err(format!("file {} not found", src.display()));
        }
        Err(e) => return Err(format!("failed to read {}: {e}", src.display())),
    };
    let fail = |action: &str, e: io::Error| format!("failed to {action} {}: {e}", src.display());
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(|e| fail("create the directory for", e))?;
    }
    match compress {
        Some(c) => {
            let mut input = File::open(&src).map_err(|e| fail("open", e))?;
            let mut out = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&dst)
                .map_err(|e| fail("store", e))?;
            let mut writer = io::BufWriter::with_capacity(1 << 16, &mut out);
            c.compress_into(&mut input, &mut writer)
                .map_err(|e| fail("compress", e))?;
            io::Write::flush(&mut writer).map_err(|e| fail("compress", e))?;
            fs::remove_file(&src).map_err(|e| fail("remove", e))?;
        }
        None if meta.is_file()
            && fs::symlink_metadata(&dst)
                .map(|m| m.is_file())
                .unwrap_or(false) =>
        {
            let mut input = File::open(&src).map_err(|e| fail("open", e))?;
            let mut out = OpenOptions::new()
                .append(true)
                .open(&dst)
                .map_err(|e| fail("store", e))?;
            io::copy(&mut input, &mut out).map_err(|e| fail("append", e))?;
            fs::remove_file(&src).map_err(|e| fail("remove", e))?;
        }
        None => move_path(&src, &dst, &meta).map_err(|e| fail("move", e))?,
    }
    Ok(stored_name)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Rename; across file systems, copy (a symlink as a symlink) and remove.
fn move_path(src: &Path, dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    match fs::rename(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            if meta.file_type().is_symlink() {
                let target = fs::read_link(src)?;
                std::os::unix::fs::symlink(target, dst)?;
            } else if meta.is_dir() {
                return Err(io::Error::other("is a directory on another file system"));
            } else {
                fs::copy(src, dst)?;
            }
            fs::remove_file(src)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    #[test]
    fn moves_compresses_appends_and_excludes() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("output.txt"), "out\n").unwrap();
        fs::write(src.join("sub/log"), "log\n").unwrap();
        fs::write(src.join("keep.bin"), "bin").unwrap();
        std::os::unix::fs::symlink("output.txt", src.join("link")).unwrap();
        let policy = FilePolicy {
            compress: Some(Compression::Gz),
            exclude: vec!["keep.bin".into()],
        };
        let s = store(
            &src,
            &dst,
            &[
                "output.txt",
                "/sub/./log",
                "keep.bin",
                "link",
                "missing",
                "../x",
            ],
            &policy,
        );
        assert_eq!(
            s.names,
            [
                "output.txt.gz",
                "sub/log.gz",
                "keep.bin",
                "link",
                "missing",
                "../x"
            ]
        );
        assert_eq!(s.problems.len(), 2, "{:?}", s.problems);
        assert!(
            fs::symlink_metadata(dst.join("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!src.join("output.txt").exists());
        // Listed again, with more output: a second member, read back whole.
        fs::write(src.join("output.txt"), "more\n").unwrap();
        let again = store(&src, &dst, &["output.txt"], &policy);
        assert_eq!(
            (again.names, again.problems.len()),
            (vec!["output.txt.gz".to_owned()], 0)
        );
        let mut text = String::new();
        Compression::Gz
            .decoder(File::open(dst.join("output.txt.gz")).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "out\nmore\n");
        // Listed again with nothing new: just listed.
        let third = store(&src, &dst, &["output.txt"], &policy);
        assert!(third.problems.is_empty());
    }

    #[test]
    fn plain_moves_and_appends() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("a"), "1").unwrap();
        let s = store(&src, &dst, &["a"], &FilePolicy::default());
        assert_eq!(s.names, ["a"]);
        fs::write(src.join("a"), "2").unwrap();
        store(&src, &dst, &["a"], &FilePolicy::default());
        assert_eq!(fs::read_to_string(dst.join("a")).unwrap(), "12");
    }
}
