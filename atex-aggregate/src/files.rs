//! Moving a result's uploaded files from atex-exec's artifacts directory
//! into the store (`files/<platform>/<test>/<subtest>/<file>`), compressing
//! them one by one when asked.
//!
//! atex-exec keeps a test's files under `<artifacts>/files/` and a
//! subtest's under `<artifacts>/files/<subtest>/` (ATEX's per-test
//! layout); a result's `files` are relative to that directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A failure to write into the store (a full disk, a read-only file
/// system): the store cannot take the result, so the ingest stops with it.
#[derive(Debug, thiserror::Error)]
#[error("failed to store {} as {}: {source}", src.display(), dst.display())]
pub struct StoreError {
    /// The file being stored.
    pub src: PathBuf,
    /// Where in the store.
    pub dst: PathBuf,
    /// Why (the OS reason: "No space left on device").
    #[source]
    pub source: io::Error,
}

/// Why one file was not stored.
enum Problem {
    /// Something about the source (missing, unreadable, a refused name):
    /// a warning, the name kept as reported.
    Source(String),
    /// Writing into the store failed.
    Store(StoreError),
}

/// The directory of the store `store` that holds the files of `test`'s
/// results on `platform` (`files/<platform>/<test>/`, each name made safe
/// as [`normalize`] does, a name it refuses with `/` replaced by `_`).
pub fn test_dir(store: &Path, platform: &str, test: &str) -> PathBuf {
    let safe = |name: &str| normalize(name).unwrap_or_else(|| name.replace(['/', '\0'], "_"));
    store.join("files").join(safe(platform)).join(safe(test))
}

/// Move `files` from `src_dir` to `dst_dir` following `policy`; `tmp_dir`
/// (in the store, on its file system) holds copies while they are made.
///
/// A file is never seen half written in the store: a copy (across file
/// systems, or compressed) is made under a temporary name in `tmp_dir` and
/// renamed into place when complete, so a full disk leaves nothing behind
/// and a retry stores the file whole (it used to append the whole file to
/// the partial copy). A file already in the store (listed by an earlier
/// result: the same output linked twice, a file uploaded in parts) gets
/// the new content appended, which is what ATEX's moving the whole
/// directory at the end of the test gives (a compressed one gets a new
/// gzip member or xz stream); an append that fails is cut back off. A
/// file missing from `src_dir` but present in the store is simply listed.
///
/// Problems with a source are returned for warnings (the name is then
/// kept as reported); a failure to write into the store is an error, at
/// once, with the file's source left where it was.
pub fn store(
    src_dir: &Path,
    dst_dir: &Path,
    files: &[impl AsRef<str>],
    policy: &FilePolicy,
    tmp_dir: &Path,
) -> Result<Stored, StoreError> {
    let mut stored = Stored {
        names: Vec::with_capacity(files.len()),
        problems: Vec::new(),
    };
    for name in files {
        let name = name.as_ref();
        match store_one(src_dir, dst_dir, name, policy, tmp_dir) {
            Ok(stored_name) => stored.names.push(stored_name),
            Err(Problem::Source(problem)) => {
                stored.problems.push(problem);
                stored.names.push(name.to_owned());
            }
            Err(Problem::Store(e)) => return Err(e),
        }
    }
    Ok(stored)
}

/// A writer that remembers whether a write failed, to tell the store's
/// errors from the source's in a copy.
struct Watched<W> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

/// Temporary names in `tmp_dir`, unique in this process (the directory
/// is emptied when a store is opened).
fn tmp_path(tmp_dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    tmp_dir.join(format!("copy-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

fn store_one(
    src_dir: &Path,
    dst_dir: &Path,
    name: &str,
    policy: &FilePolicy,
    tmp_dir: &Path,
) -> Result<String, Problem> {
    let rel = normalize(name).filter(|r| !r.is_empty()).ok_or_else(|| {
        Problem::Source(format!(
            "file name {name:?} escapes its directory or names no file"
        ))
    })?;
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
            return Err(Problem::Source(format!("file {} not found", src.display())));
        }
        Err(e) => {
            return Err(Problem::Source(format!(
                "failed to read {}: {e}",
                src.display()
            )));
        }
    };
    let source = |action: &str, e: io::Error| {
        Problem::Source(format!("failed to {action} {}: {e}", src.display()))
    };
    let store_err = |e: io::Error| {
        Problem::Store(StoreError {
            src: src.clone(),
            dst: dst.clone(),
            source: e,
        })
    };
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(store_err)?;
    }
    let dst_is_file = fs::symlink_metadata(&dst)
        .map(|m| m.is_file())
        .unwrap_or(false);
    match compress {
        Some(c) => {
            let mut input = File::open(&src).map_err(|e| source("open", e))?;
            if dst_is_file {
                append(&dst, |out| c.compress_into(&mut input, out))
            } else {
                copy_new(&dst, tmp_dir, |out| c.compress_into(&mut input, out))
            }
            .map_err(|(e, store)| {
                if store {
                    store_err(e)
                } else {
                    source("compress", e)
                }
            })?;
            fs::remove_file(&src).map_err(|e| source("remove", e))?;
        }
        None if meta.is_file() && dst_is_file => {
            let mut input = File::open(&src).map_err(|e| source("open", e))?;
            append(&dst, |out| io::copy(&mut input, out).map(drop)).map_err(|(e, store)| {
                if store {
                    store_err(e)
                } else {
                    source("read", e)
                }
            })?;
            fs::remove_file(&src).map_err(|e| source("remove", e))?;
        }
        None => match fs::rename(&src, &dst) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                if meta.file_type().is_symlink() {
                    let target = fs::read_link(&src).map_err(|e| source("read", e))?;
                    let tmp = tmp_path(tmp_dir);
                    std::os::unix::fs::symlink(target, &tmp)
                        .and_then(|()| fs::rename(&tmp, &dst))
                        .inspect_err(|_| {
                            let _ = fs::remove_file(&tmp);
                        })
                        .map_err(store_err)?;
                } else if meta.is_dir() {
                    return Err(source(
                        "move",
                        io::Error::other("is a directory on another file system"),
                    ));
                } else {
                    let mut input = File::open(&src).map_err(|e| source("open", e))?;
                    copy_new(&dst, tmp_dir, |out| io::copy(&mut input, out).map(drop)).map_err(
                        |(e, store)| {
                            if store {
                                store_err(e)
                            } else {
                                source("read", e)
                            }
                        },
                    )?;
                }
                fs::remove_file(&src).map_err(|e| source("remove", e))?;
            }
            Err(e) => return Err(source("move", e)),
        },
    }
    Ok(stored_name)
}

/// Write a new file at `dst` with what `fill` writes, through a temporary
/// name in `tmp_dir`: `dst` appears only complete. The error says whether
/// the store's side failed (`true`) or the source's.
fn copy_new(
    dst: &Path,
    tmp_dir: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), (io::Error, bool)> {
    let tmp = tmp_path(tmp_dir);
    let made = (|| {
        let file = File::create(&tmp).map_err(|e| (e, true))?;
        let mut out = Watched {
            inner: io::BufWriter::with_capacity(1 << 16, file),
            failed: false,
        };
        fill(&mut out).map_err(|e| (e, out.failed))?;
        out.flush().map_err(|e| (e, true))?;
        drop(out);
        fs::rename(&tmp, dst).map_err(|e| (e, true))
    })();
    if made.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    made
}

/// Append what `fill` writes to the file `dst`; when that fails, cut the
/// file back to its length before, so a retry never appends to half an
/// append. The error says whether the store's side failed.
fn append(
    dst: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), (io::Error, bool)> {
    let file = OpenOptions::new()
        .append(true)
        .open(dst)
        .map_err(|e| (e, true))?;
    let len = file.metadata().map_err(|e| (e, true))?.len();
    let mut out = Watched {
        inner: io::BufWriter::with_capacity(1 << 16, &file),
        failed: false,
    };
    let written = fill(&mut out)
        .map_err(|e| (e, out.failed))
        .and_then(|()| out.flush().map_err(|e| (e, true)));
    drop(out);
    if written.is_err() {
        let _ = file.set_len(len);
    }
    written
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
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
        let tmp_dir = tmp.path().join("tmp");
        fs::create_dir_all(&tmp_dir).unwrap();
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
            &tmp_dir,
        )
        .unwrap();
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
        let again = store(&src, &dst, &["output.txt"], &policy, &tmp_dir).unwrap();
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
        let third = store(&src, &dst, &["output.txt"], &policy, &tmp_dir).unwrap();
        assert!(third.problems.is_empty());
    }

    #[test]
    fn plain_moves_and_appends() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("a"), "1").unwrap();
        let tmp_dir = tmp.path().join("tmp");
        fs::create_dir_all(&tmp_dir).unwrap();
        let s = store(&src, &dst, &["a"], &FilePolicy::default(), &tmp_dir).unwrap();
        assert_eq!(s.names, ["a"]);
        fs::write(src.join("a"), "2").unwrap();
        store(&src, &dst, &["a"], &FilePolicy::default(), &tmp_dir).unwrap();
        assert_eq!(fs::read_to_string(dst.join("a")).unwrap(), "12");
    }
}
