//! A test's artifacts directory: confined file names and appending writes.
//!
//! One [`Artifacts`] value stands for the directory of one test run
//! (`--artifacts DIR/<test name>/`, DESIGN.md), laid out as ATEX lays out
//! its per-test artifacts (spec/atex-reference.md section 3, "Test
//! Artifacts"):
//!
//! ```text
//! A/files/<result name or .>/<file name>   uploaded files, appended to
//! A/testout.temp                            the test's output while it runs
//! ```
//!
//! Every name that comes from a test (result names, file names, `testout`)
//! goes through [`confine`], so nothing is ever written outside the
//! directory: leading `/` are stripped and `.` components dropped (as ATEX's
//! `normpath(name.lstrip("/"))` does), `..` is resolved lexically and dropped
//! where it would climb above its base (as ATEX's `normalize_path` drops
//! `..`), and NUL bytes are refused. A test that names `/etc/x` or `../../x`
//! thus gets its file stored as `etc/x` or `x` inside the directory, and its
//! result stands, as in ATEX; [`needs_confining`] tells the caller to warn.
//! Test names, which come from the Test records rather than from the test,
//! go through the stricter [`normalize`], which refuses a climbing `..`.
//! Names are bytes (STYLE.md rule 8): a name that is not UTF-8 is stored
//! under exactly its bytes.
//!
//! Confinement is lexical, and every entry under the directory is reached
//! from an open descriptor of the test's directory one component at a
//! time, with `O_NOFOLLOW`: a symbolic link planted under the directory
//! (by a test running on this machine, say) is never followed, whether it
//! stands for the file written or for a directory on the way
//! ([`ArtifactsError::Symlink`]). Only regular files are written to
//! ([`ArtifactsError::NotRegular`]: a FIFO would block the executor). This
//! module only creates directories, regular files and hard links.
//! The root a test directory is made under (`--artifacts`) is the user's
//! and may itself be a symbolic link.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// The name of the directory, under a test's artifacts directory, that holds
/// uploaded files and linked test outputs.
pub const FILES_DIR: &str = "files";

/// The name of the file, under a test's artifacts directory, that collects
/// the test's output while it runs.
pub const TESTOUT_TEMP: &str = "testout.temp";

/// Why a name or a file operation under an artifacts directory was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactsError {
    /// The name contains a NUL byte, which no file name can hold.
    #[error("accept name {name:?}: it contains a NUL byte")]
    Nul {
        /// The offending name, lossily decoded for display.
        name: String,
    },
    /// A `..` component would climb above the directory the name is
    /// relative to.
    #[error("accept name {name:?}: it escapes its directory")]
    Escapes {
        /// The offending name, lossily decoded for display.
        name: String,
    },
    /// The name is empty once normalised (`""`, `"/"`, `"."`, `"a/.."`),
    /// where a file name is needed.
    #[error("accept name {name:?}: it names no file")]
    Empty {
        /// The offending name, lossily decoded for display.
        name: String,
    },
    /// The target of a link already exists.
    #[error("file '{name}' already exists")]
    Exists {
        /// The name as the test gave it, lossily decoded for display.
        name: String,
        /// Where the link was to be made.
        path: PathBuf,
    },
    /// A symbolic link stands where a file or directory of the artifacts
    /// is written: it is not followed.
    #[error("use {}: it is a symbolic link, which is not followed", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Something other than a regular file (a FIFO, a device) stands where
    /// a file is written.
    #[error("use {}: it is not a regular file", path.display())]
    NotRegular {
        /// The entry.
        path: PathBuf,
    },
    /// A file-system operation failed; the message carries the OS reason,
    /// e.g. `write /a/files/log: No space left on device (os error 28)`.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `create directory`.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn lossy(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArtifactsError {
    let path = path.to_path_buf();
    move |source| ArtifactsError::Io {
        action,
        path,
        source,
    }
}

/// Turn a name reported by a test into a relative path that stays inside the
/// directory it is relative to; an empty path means that directory itself.
///
/// Leading and repeated `/` and `.` components are dropped; `..` removes the
/// component before it and is refused ([`ArtifactsError::Escapes`]) when
/// there is none, so `a/../b` is `b` (as in ATEX) but `..`, `a/../../x` are
/// refused; NUL bytes are refused ([`ArtifactsError::Nul`]).
///
/// ```
/// use atex_exec::artifacts::normalize;
/// assert_eq!(normalize(b"/some//./log").unwrap(), std::path::Path::new("some/log"));
/// assert_eq!(normalize(b"a/../b").unwrap(), std::path::Path::new("b"));
/// assert!(normalize(b"a/../../x").is_err());
/// ```
pub fn normalize(name: &[u8]) -> Result<PathBuf, ArtifactsError> {
    let lexical = Lexical::of(name)?;
    if lexical.climbed {
        return Err(ArtifactsError::Escapes { name: lossy(name) });
    }
    Ok(lexical.path)
}

/// Turn a name reported by a test into a relative path inside the directory
/// it is relative to, as ATEX does: like [`normalize`], but a `..` that
/// would climb above the directory is dropped instead of refused, so
/// `../../x` and `a/../../x` are `x`; an empty path means the directory
/// itself. Only NUL bytes are refused ([`ArtifactsError::Nul`]).
///
/// ```
/// use atex_exec::artifacts::confine;
/// use std::path::Path;
/// assert_eq!(confine(b"/etc/passwd").unwrap(), Path::new("etc/passwd"));
/// assert_eq!(confine(b"a/../../../x").unwrap(), Path::new("x"));
/// assert_eq!(confine(b"..").unwrap(), Path::new(""));
/// ```
pub fn confine(name: &[u8]) -> Result<PathBuf, ArtifactsError> {
    Ok(Lexical::of(name)?.path)
}

/// Like [`confine`], for names that must name a file (not empty).
pub fn confine_file(name: &[u8]) -> Result<PathBuf, ArtifactsError> {
    let path = confine(name)?;
    if path.as_os_str().is_empty() {
        return Err(ArtifactsError::Empty { name: lossy(name) });
    }
    Ok(path)
}

/// Whether [`confine`] changes where `name` points: it is absolute (leading
/// `/`) or a `..` climbs above its directory. The caller warns then: the
/// file is not where the test said. (`a/../b` and `./b` are not such names.)
///
/// ```
/// use atex_exec::artifacts::needs_confining;
/// assert!(needs_confining(b"/tmp/x") && needs_confining(b"a/../../x"));
/// assert!(!needs_confining(b"a/../b") && !needs_confining(b"./b"));
/// ```
pub fn needs_confining(name: &[u8]) -> bool {
    name.first() == Some(&b'/') || Lexical::of(name).is_ok_and(|l| l.climbed)
}

/// A name resolved lexically: its components without `.`, empty ones and
/// the `..` that cancel a component before them.
struct Lexical {
    path: PathBuf,
    /// Some `..` had no component before it to cancel (it was dropped).
    climbed: bool,
}

impl Lexical {
    fn of(name: &[u8]) -> Result<Lexical, ArtifactsError> {
        if name.contains(&0) {
            return Err(ArtifactsError::Nul { name: lossy(name) });
        }
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut climbed = false;
        for part in name.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => climbed |= parts.pop().is_none(),
                _ => parts.push(part),
            }
        }
        Ok(Lexical {
            path: parts.iter().map(|p| OsStr::from_bytes(p)).collect(),
            climbed,
        })
    }
}

/// The artifacts directory of one test run, held open: every entry under
/// it is reached from this descriptor without following symbolic links.
///
/// ```
/// use std::io::Write;
/// use atex_exec::artifacts::Artifacts;
/// let tmp = tempfile::tempdir().unwrap();
/// let artifacts = Artifacts::for_test(tmp.path(), "/tests/basic").unwrap();
/// let mut log = artifacts.open_append(Some(b"sub/test"), b"some/log").unwrap();
/// log.write_all(b"hello\n").unwrap();
/// let stored = tmp.path().join("tests/basic/files/sub/test/some/log");
/// assert_eq!(std::fs::read(stored).unwrap(), b"hello\n");
/// // A name climbing out is kept inside: stored as `files/escape`.
/// Artifacts::for_test(tmp.path(), "/tests/basic")
///     .unwrap()
///     .open_append(None, b"../../escape")
///     .unwrap();
/// assert!(tmp.path().join("tests/basic/files/escape").is_file());
/// assert!(!tmp.path().join("escape").exists());
/// ```
#[derive(Debug, Clone)]
pub struct Artifacts {
    dir: PathBuf,
    /// The directory, open (shared by clones: one descriptor per test).
    fd: Arc<OwnedFd>,
}

/// Two values are equal when they name the same directory.
impl PartialEq for Artifacts {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir
    }
}

impl Eq for Artifacts {}

/// Open flags of a directory on the way: never through a symbolic link.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The mode new directories and files get (the umask applies).
const DIR_MODE: u32 = 0o777;
const FILE_MODE: u32 = 0o666;

/// Open (and with `create`, make) the directory `name` in `parent`
/// without following a symbolic link; `path` names it in errors.
fn open_dir(
    parent: &OwnedFd,
    name: &OsStr,
    path: &Path,
    create: bool,
) -> Result<OwnedFd, ArtifactsError> {
    let mut made = false;
    loop {
        match rustix::fs::openat(parent, name, dir_flags(), Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(rustix::io::Errno::NOENT) if create && !made => {
                match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(DIR_MODE)) {
                    // Made by someone else meanwhile: open it all the same.
                    Ok(()) | Err(rustix::io::Errno::EXIST) => made = true,
                    Err(e) => return Err(io_error("create directory", path)(e.into())),
                }
            }
            Err(e) => return Err(refusal(parent, name, path, e, "open directory")),
        }
    }
}

/// The error for a failed `openat` of `name` in `parent`: a symbolic link
/// there is named as such (`O_NOFOLLOW` reports it as `ELOOP`, and with
/// `O_DIRECTORY` possibly as `ENOTDIR`), and so is a FIFO or a device.
fn refusal(
    parent: &OwnedFd,
    name: &OsStr,
    path: &Path,
    e: rustix::io::Errno,
    action: &'static str,
) -> ArtifactsError {
    let kind = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|st| FileType::from_raw_mode(st.st_mode));
    match kind {
        Ok(FileType::Symlink)
            if matches!(e, rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) =>
        {
            ArtifactsError::Symlink {
                path: path.to_path_buf(),
            }
        }
        // A FIFO without a reader (ENXIO with O_NONBLOCK), a device...
        Ok(
            FileType::Fifo | FileType::Socket | FileType::CharacterDevice | FileType::BlockDevice,
        ) => ArtifactsError::NotRegular {
            path: path.to_path_buf(),
        },
        _ => io_error(action, path)(e.into()),
    }
}

/// Open the regular file `name` in `parent` for writing with `extra`
/// flags, creating it; never through a symbolic link, never a FIFO.
fn open_file(
    parent: &OwnedFd,
    name: &OsStr,
    path: &Path,
    extra: OFlags,
) -> Result<File, ArtifactsError> {
    // O_NONBLOCK: opening a FIFO planted there must not block; it only
    // matters for the open, and is cleared again below.
    let flags = OFlags::WRONLY
        | OFlags::CREATE
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NONBLOCK
        | extra;
    let fd = rustix::fs::openat(parent, name, flags, Mode::from_raw_mode(FILE_MODE))
        .map_err(|e| refusal(parent, name, path, e, "open"))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| io_error("inspect", path)(e.into()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(ArtifactsError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let set = rustix::fs::fcntl_getfl(&fd)
        .and_then(|fl| rustix::fs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK));
    set.map_err(|e| io_error("open", path)(e.into()))?;
    Ok(File::from(fd))
}

/// The directories of a relative path and its last component.
fn split(relative: &Path) -> (Vec<&OsStr>, Option<&OsStr>) {
    let mut parts: Vec<&OsStr> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect();
    let last = parts.pop();
    (parts, last)
}

impl Artifacts {
    /// Use `dir` as a test's artifacts directory, creating it (and its
    /// parents) if needed. `dir` itself is the caller's choice and may be
    /// reached through symbolic links.
    pub fn create(dir: impl Into<PathBuf>) -> Result<Self, ArtifactsError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        let fd = rustix::fs::open(
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error("open directory", &dir)(e.into()))?;
        Ok(Self {
            dir,
            fd: Arc::new(fd),
        })
    }

    /// The artifacts directory of the test named `test_name` (e.g.
    /// `/tests/basic`) under `root`: `root/tests/basic`, created if needed.
    /// The test name is confined like any other name ([`normalize`]), and
    /// its directories are made without following symbolic links (`root`
    /// itself may be one).
    pub fn for_test(root: &Path, test_name: &str) -> Result<Self, ArtifactsError> {
        let relative = normalize(test_name.as_bytes())?;
        let mut artifacts = Self::create(root)?;
        let mut path = root.to_path_buf();
        for part in relative.iter() {
            path.push(part);
            let fd = open_dir(&artifacts.fd, part, &path, true)?;
            artifacts.fd = Arc::new(fd);
        }
        artifacts.dir = path;
        Ok(artifacts)
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the test's output is collected while it runs
    /// (`A/testout.temp`); the executor appends to it
    /// ([`Artifacts::open_testout`]), results link it under a name of their
    /// choice ([`Artifacts::link_testout`]).
    pub fn testout_path(&self) -> PathBuf {
        self.dir.join(TESTOUT_TEMP)
    }

    /// Open the test's output file ([`Artifacts::testout_path`]) for
    /// appending, creating it; never through a symbolic link.
    pub fn open_testout(&self) -> Result<File, ArtifactsError> {
        open_file(
            &self.fd,
            OsStr::new(TESTOUT_TEMP),
            &self.testout_path(),
            OFlags::APPEND,
        )
    }

    /// Remove the test's output file ([`Artifacts::testout_path`]) once the
    /// test is over; its links under `files/` keep the content. A missing
    /// file is not an error.
    pub fn remove_testout(&self) -> Result<(), ArtifactsError> {
        match rustix::fs::unlinkat(&*self.fd, TESTOUT_TEMP, AtFlags::empty()) {
            Err(e) if e != rustix::io::Errno::NOENT => {
                Err(io_error("remove", &self.testout_path())(e.into()))
            }
            _ => Ok(()),
        }
    }

    /// The directory of a result's files: `A/files/<confined name>`, or
    /// `A/files` for the test itself (`None`). Nothing is created.
    pub fn result_dir(&self, result: Option<&[u8]>) -> Result<PathBuf, ArtifactsError> {
        Ok(self.dir.join(self.relative_dir(result)?))
    }

    /// [`Artifacts::result_dir`] relative to the test's directory.
    fn relative_dir(&self, result: Option<&[u8]>) -> Result<PathBuf, ArtifactsError> {
        let base = PathBuf::from(FILES_DIR);
        Ok(match result {
            Some(name) => base.join(confine(name)?),
            None => base,
        })
    }

    /// Where the file `file` of result `result` is stored:
    /// `A/files/<result name or .>/<file name>`, both names confined
    /// ([`confine`]). Nothing is created.
    pub fn file_path(&self, result: Option<&[u8]>, file: &[u8]) -> Result<PathBuf, ArtifactsError> {
        Ok(self.result_dir(result)?.join(confine_file(file)?))
    }

    /// Open (creating them) the directories of `relative` under the test's
    /// directory, without following symbolic links; returns the last
    /// directory and the name in it.
    fn parent_of<'a>(&self, relative: &'a Path) -> Result<(OwnedFd, &'a OsStr), ArtifactsError> {
        let (dirs, last) = split(relative);
        let Some(last) = last else {
            return Err(ArtifactsError::Empty {
                name: relative.display().to_string(),
            });
        };
        let mut path = self.dir.clone();
        let mut fd = self
            .fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(io_error("open directory", &self.dir))?;
        for part in dirs {
            path.push(part);
            fd = open_dir(&fd, part, &path, true)?;
        }
        Ok((fd, last))
    }

    /// Open the file `file` of result `result` for writing at its end,
    /// creating it and its directories if needed, so that the same name
    /// reported again appends (as ATEX does). The file is not opened with
    /// `O_APPEND` because the executor may splice into it. No symbolic link
    /// is followed on the way ([`ArtifactsError::Symlink`]).
    pub fn open_append(&self, result: Option<&[u8]>, file: &[u8]) -> Result<File, ArtifactsError> {
        let relative = self.relative_dir(result)?.join(confine_file(file)?);
        let path = self.dir.join(&relative);
        let (parent, name) = self.parent_of(&relative)?;
        let mut handle = open_file(&parent, name, &path, OFlags::empty())?;
        handle
            .seek(SeekFrom::End(0))
            .map_err(io_error("seek to the end of", &path))?;
        Ok(handle)
    }

    /// Hard-link the test's output file ([`Artifacts::testout_path`]) as
    /// `A/files/<result name or .>/<name>`, so output written later still
    /// shows in the link. Fails with [`ArtifactsError::Exists`] if that
    /// name exists already (a symbolic link included: it is not followed).
    /// Returns the confined name, relative to the result's directory.
    pub fn link_testout(
        &self,
        result: Option<&[u8]>,
        name: &[u8],
    ) -> Result<PathBuf, ArtifactsError> {
        let confined = confine_file(name)?;
        let relative = self.relative_dir(result)?.join(&confined);
        let path = self.dir.join(&relative);
        let (parent, last) = self.parent_of(&relative)?;
        // Flags 0: a symbolic link in place of testout.temp is linked
        // itself, never what it points to.
        match rustix::fs::linkat(&*self.fd, TESTOUT_TEMP, &parent, last, AtFlags::empty()) {
            Ok(()) => Ok(confined),
            Err(rustix::io::Errno::EXIST) => Err(ArtifactsError::Exists {
                name: lossy(name),
                path,
            }),
            Err(e) => Err(io_error("link the test output to", &path)(e.into())),
        }
    }

    /// After an interrupt: keep the test's output as `A/files/output.txt`
    /// (renamed, when no result linked it yet). Returns whether that file
    /// exists now.
    pub fn keep_testout(&self, default: &str) -> Result<bool, ArtifactsError> {
        let relative = Path::new(FILES_DIR).join(default);
        let path = self.dir.join(&relative);
        let (parent, last) = self.parent_of(&relative)?;
        if rustix::fs::statat(&parent, last, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Ok(true);
        }
        match rustix::fs::renameat(&*self.fd, TESTOUT_TEMP, &parent, last) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(io_error("keep the test output as", &path)(e.into())),
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    /// Every path under `dir`, relative to it, sorted.
    fn tree(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                out.push(path.strip_prefix(dir).unwrap().to_path_buf());
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn normalisation_like_atex() {
        let n = |s: &str| normalize(s.as_bytes()).unwrap();
        assert_eq!(n("/log"), Path::new("log"));
        assert_eq!(n("//a/./b//c/"), Path::new("a/b/c"));
        assert_eq!(n("a/../b"), Path::new("b"));
        assert_eq!(n("."), Path::new(""));
        assert_eq!(n("/"), Path::new(""));
        assert!(matches!(
            normalize(b".."),
            Err(ArtifactsError::Escapes { .. })
        ));
        assert!(matches!(
            normalize(b"a/../../x"),
            Err(ArtifactsError::Escapes { .. })
        ));
        assert!(matches!(
            normalize(b"/../x"),
            Err(ArtifactsError::Escapes { .. })
        ));
        assert!(matches!(
            normalize(b"a\0b"),
            Err(ArtifactsError::Nul { .. })
        ));
        assert!(matches!(
            confine_file(b"a/.."),
            Err(ArtifactsError::Empty { .. })
        ));
        // Bytes that are not UTF-8 are kept as they are.
        assert_eq!(
            normalize(b"x/\xff\xfe").unwrap().as_os_str().as_bytes(),
            b"x/\xff\xfe"
        );
    }

    #[test]
    fn confinement_drops_what_climbs_out() {
        let c = |s: &str| confine(s.as_bytes()).unwrap();
        assert_eq!(c("../x"), Path::new("x"));
        assert_eq!(c("/../../x"), Path::new("x"));
        assert_eq!(c("a/../../b/./c"), Path::new("b/c"));
        assert_eq!(c("a/b/../../.."), Path::new(""));
        assert_eq!(c("/etc/passwd"), Path::new("etc/passwd"));
        assert!(matches!(confine(b"a\0b"), Err(ArtifactsError::Nul { .. })));
        assert!(matches!(
            confine_file(b"../.."),
            Err(ArtifactsError::Empty { .. })
        ));
        for (name, changed) in [
            ("/x", true),
            ("..", true),
            ("a/../../x", true),
            ("x/..", false),
            ("a/../b", false),
            ("./a", false),
            ("a\0", false),
        ] {
            assert_eq!(needs_confining(name.as_bytes()), changed, "{name}");
        }
    }

    #[test]
    fn path_mapping_of_the_spec() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Artifacts::create(tmp.path().join("A")).unwrap();
        a.open_append(None, b"log").unwrap();
        a.open_append(Some(b"sub/test"), b"some/log").unwrap();
        assert!(tmp.path().join("A/files/log").is_file());
        assert!(tmp.path().join("A/files/sub/test/some/log").is_file());
        assert_eq!(
            a.file_path(Some(b"/x"), b"/y").unwrap(),
            tmp.path().join("A/files/x/y")
        );
    }

    #[test]
    fn repeated_names_append() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Artifacts::create(tmp.path()).unwrap();
        a.open_append(None, b"log")
            .unwrap()
            .write_all(b"one ")
            .unwrap();
        a.open_append(None, b"./log")
            .unwrap()
            .write_all(b"two")
            .unwrap();
        a.open_append(None, b"empty").unwrap();
        assert_eq!(fs::read(tmp.path().join("files/log")).unwrap(), b"one two");
        assert_eq!(fs::read(tmp.path().join("files/empty")).unwrap(), b"");
    }

    #[test]
    fn confinement_never_writes_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Artifacts::create(tmp.path().join("A")).unwrap();
        // What names no file, or cannot be a name, is refused.
        let refused: [(Option<&[u8]>, &[u8]); 5] = [
            (None, b".."),
            (Some(b"x"), b"../.."),
            (None, b"a\0b"),
            (Some(b"a\0"), b"b"),
            (None, b"/"),
        ];
        for (result, file) in refused {
            assert!(a.open_append(result, file).is_err(), "{result:?} {file:?}");
        }
        // Absolute and climbing names are made relative and confined.
        a.open_append(Some(b"/abs"), b"/etc/passwd-like").unwrap();
        a.open_append(None, b"../x").unwrap();
        a.open_append(Some(b"../.."), b"a/../../y").unwrap();
        a.open_append(Some(b"a/../../r"), b"../../../z").unwrap();
        assert_eq!(
            tree(tmp.path()),
            [
                "A",
                "A/files",
                "A/files/abs",
                "A/files/abs/etc",
                "A/files/abs/etc/passwd-like",
                "A/files/r",
                "A/files/r/z",
                "A/files/x",
                "A/files/y",
            ]
            .map(PathBuf::from)
        );
        // Test names come from records, not from the test: still refused.
        assert!(Artifacts::for_test(tmp.path(), "/../x").is_err());
    }

    #[test]
    fn testout_link_and_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let a = Artifacts::for_test(tmp.path(), "/t").unwrap();
        fs::write(a.testout_path(), b"early ").unwrap();
        let name = a.link_testout(Some(b"sub"), b"/out.txt").unwrap();
        assert_eq!(name, Path::new("out.txt"));
        // Output written after the link shows through it.
        let mut out = OpenOptions::new()
            .append(true)
            .open(a.testout_path())
            .unwrap();
        out.write_all(b"late").unwrap();
        let linked = tmp.path().join("t/files/sub/out.txt");
        assert_eq!(fs::read(&linked).unwrap(), b"early late");
        let err = a.link_testout(Some(b"sub"), b"out.txt").unwrap_err();
        assert_eq!(err.to_string(), "file 'out.txt' already exists");
        let name = a.link_testout(None, b"../x").unwrap();
        assert_eq!(name, Path::new("x"));
        assert!(tmp.path().join("t/files/x").is_file());
        assert!(a.link_testout(None, b"..").is_err());
    }

    #[test]
    fn symbolic_links_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("file"), b"original").unwrap();
        let a = Artifacts::for_test(tmp.path(), "/t").unwrap();
        let files = a.dir().join(FILES_DIR);
        fs::create_dir(&files).unwrap();
        std::os::unix::fs::symlink(outside.join("file"), files.join("x")).unwrap();
        std::os::unix::fs::symlink(&outside, files.join("d")).unwrap();
        let refused = |e: ArtifactsError, link: &str| match e {
            ArtifactsError::Symlink { path } => assert_eq!(path, files.join(link)),
            other => panic!("{link}: {other}"),
        };
        refused(a.open_append(None, b"x").unwrap_err(), "x");
        refused(a.open_append(None, b"d/file").unwrap_err(), "d");
        refused(a.open_append(Some(b"d"), b"new").unwrap_err(), "d");
        refused(a.link_testout(Some(b"d"), b"out").unwrap_err(), "d");
        // The link's own name exists: not replaced, not followed.
        fs::write(a.testout_path(), b"out").unwrap();
        assert!(matches!(
            a.link_testout(None, b"x"),
            Err(ArtifactsError::Exists { .. })
        ));
        assert_eq!(fs::read(outside.join("file")).unwrap(), b"original");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
        // A test's own directory planted as a link, and its output file.
        std::os::unix::fs::symlink(&outside, tmp.path().join("u")).unwrap();
        assert!(matches!(
            Artifacts::for_test(tmp.path(), "/u/v"),
            Err(ArtifactsError::Symlink { .. })
        ));
        fs::remove_file(a.testout_path()).unwrap();
        std::os::unix::fs::symlink(outside.join("file"), a.testout_path()).unwrap();
        assert!(matches!(
            a.open_testout(),
            Err(ArtifactsError::Symlink { .. })
        ));
        // A FIFO is not opened (it would block).
        rustix::fs::mknodat(
            rustix::fs::CWD,
            files.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(
            a.open_append(None, b"fifo"),
            Err(ArtifactsError::NotRegular { .. })
        ));
        assert_eq!(fs::read(outside.join("file")).unwrap(), b"original");
    }

    #[test]
    fn io_errors_carry_the_os_reason() {
        let e = ArtifactsError::Io {
            action: "write",
            path: PathBuf::from("/a/files/log"),
            source: io::Error::from_raw_os_error(28),
        };
        assert_eq!(
            e.to_string(),
            "write /a/files/log: No space left on device (os error 28)"
        );
    }

    fn component() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"..".to_vec()),
            Just(b".".to_vec()),
            Just(Vec::new()),
            Just(b"a".to_vec()),
            Just(b"\0".to_vec()),
            Just(b"\xff".to_vec()),
            proptest::collection::vec(any::<u8>(), 1..4),
        ]
    }

    fn name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(component(), 0..6).prop_map(|parts| parts.join(&b'/'))
    }

    proptest! {
        #[test]
        fn random_names_never_escape(
            names in proptest::collection::vec((proptest::option::of(name()), name()), 1..6)
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("A");
            let a = Artifacts::create(&dir).unwrap();
            fs::write(a.testout_path(), b"").unwrap();
            for (result, file) in &names {
                if let Ok(path) = a.file_path(result.as_deref(), file) {
                    prop_assert!(path.starts_with(dir.join(FILES_DIR)));
                }
                let _ = a.open_append(result.as_deref(), file);
                let _ = a.link_testout(result.as_deref(), file);
            }
            let entries: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
            prop_assert_eq!(entries.len(), 1);
            for path in tree(&dir) {
                prop_assert!(
                    path == Path::new(TESTOUT_TEMP) || path.starts_with(FILES_DIR),
                    "{:?}", path
                );
            }
        }
    }
}
