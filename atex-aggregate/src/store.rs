//! The results file of a store (`results.jsonl`, `.jsonl.gz`, `.jsonl.xz`):
//! batched appends where every flush is a complete gzip member or xz stream,
//! and reading back every complete line of a store that may have been cut
//! off by a crash.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression as GzLevel;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use lzma_rust2::{XzOptions, XzReader, XzWriter};

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`.gz`).
    Gz,
    /// xz (`.xz`).
    Xz,
}

/// The gzip level of the results file and of compressed files (ATEX uses
/// 9; 6 is zlib's default and several times faster for the last few
/// percent of size).
const GZ_LEVEL: u32 = 6;
/// The xz preset (ATEX uses 9).
const XZ_PRESET: u32 = 6;
/// The xz dictionary: one stream per flush holds at most a few MiB, so a
/// bigger dictionary (64 MiB at ATEX's preset 9) only costs memory.
const XZ_DICT: u32 = 4 << 20;

impl Compression {
    /// The file name suffix: `""`, `".gz"`, `".xz"`.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gz => ".gz",
            Compression::Xz => ".xz",
        }
    }

    /// The results file name of a store compressed this way.
    pub fn results_name(self) -> String {
        format!("results.jsonl{}", self.suffix())
    }

    /// Compress `data` into one self-contained gzip member or xz stream
    /// (or return it as is).
    pub fn compress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len() / 4 + 64);
        self.compress_into(&mut &data[..], &mut out)?;
        Ok(out)
    }

    /// Compress everything `input` gives into `output` as one member or
    /// stream.
    pub fn compress_into(self, input: &mut dyn Read, output: &mut dyn Write) -> io::Result<()> {
        match self {
            Compression::None => {
                io::copy(input, output)?;
            }
            Compression::Gz => {
                let mut enc = GzEncoder::new(output, GzLevel::new(GZ_LEVEL));
                io::copy(input, &mut enc)?;
                enc.finish()?;
            }
            Compression::Xz => {
                let mut options = XzOptions::with_preset(XZ_PRESET);
                options.lzma_options.dict_size = options.lzma_options.dict_size.min(XZ_DICT);
                let mut enc = XzWriter::new(output, options)?;
                io::copy(input, &mut enc)?;
                enc.finish()?;
            }
        }
        Ok(())
    }

    /// A reader of everything in `input`: all members or streams, one
    /// after the other.
    pub fn decoder<'a, R: Read + 'a>(self, input: R) -> Box<dyn Read + 'a> {
        match self {
            Compression::None => Box::new(input),
            Compression::Gz => Box::new(MultiGzDecoder::new(input)),
            Compression::Xz => Box::new(XzReader::new(input, true)),
        }
    }
}

/// Appends lines to a results file; each [`ResultsWriter::flush`] writes
/// the lines collected since the last one in one `write`, as one gzip
/// member or xz stream when compressed, so the file is always a sequence of
/// complete members (concatenated members and streams are valid files).
#[derive(Debug)]
pub struct ResultsWriter {
    file: File,
    path: PathBuf,
    compression: Compression,
    pending: Vec<u8>,
}

impl ResultsWriter {
    /// Append to `path` (created if missing).
    pub fn open(path: &Path, compression: Compression) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(ResultsWriter {
            file,
            path: path.to_path_buf(),
            compression,
            pending: Vec::with_capacity(1 << 20),
        })
    }

    /// The buffer lines are appended to (each must end with `\n`).
    pub fn pending(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// How many bytes wait for the next flush.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write what is pending.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        match self.compression {
            Compression::None => self.file.write_all(&self.pending)?,
            c => {
                let data = c.compress(&self.pending)?;
                self.file.write_all(&data)?;
            }
        }
        self.pending.clear();
        Ok(())
    }
}

/// What reading a results file back found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// Complete lines read (blank lines included).
    pub lines: u64,
    /// Whether the file ends in a cut-off line or a truncated or damaged
    /// member: what a killed writer leaves.
    pub damaged: bool,
    /// For an uncompressed file, the length of its complete lines.
    pub valid_len: u64,
}

/// Call `each` with every complete line of the results file at `path`
/// (without its newline), stopping quietly at a cut-off end; `each` may
/// stop the reading with an error.
pub fn read_lines<E: From<io::Error>>(
    path: &Path,
    compression: Compression,
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<ReadBack, E> {
    let file = File::open(path)?;
    let mut reader = BufReader::with_capacity(1 << 18, compression.decoder(BufReader::new(file)));
    let mut back = ReadBack::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) if buf.last() == Some(&b'\n') => {
                back.lines += 1;
                back.valid_len += buf.len() as u64;
                buf.pop();
                each(&buf)?;
            }
            Ok(_) => {
                back.damaged = true;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if compression != Compression::None
                    && matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::InvalidData
                            | io::ErrorKind::InvalidInput
                            | io::ErrorKind::Other
                    ) =>
            {
                back.damaged = true;
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(back)
}

/// Which results file the store `dir` has, if any.
pub fn find_results(dir: &Path) -> Option<(PathBuf, Compression)> {
    [Compression::None, Compression::Gz, Compression::Xz]
        .into_iter()
        .map(|c| (dir.join(c.results_name()), c))
        .find(|(p, _)| p.exists())
}

/// Make a damaged results file whole again: cut an uncompressed file after
/// its last complete line; rewrite a compressed one with its complete
/// lines (write a temp file, then rename over).
pub fn repair(path: &Path, compression: Compression, back: &ReadBack) -> io::Result<()> {
    if !back.damaged {
        return Ok(());
    }
    if compression == Compression::None {
        let file = OpenOptions::new().write(true).open(path)?;
        return file.set_len(back.valid_len);
    }
    let tmp = path.with_extension("repair.tmp");
    let mut writer = ResultsWriter::open(&tmp, compression)?;
    read_lines::<io::Error>(path, compression, |line| {
        writer.pending().extend_from_slice(line);
        writer.pending().push(b'\n');
        if writer.pending_len() >= 1 << 20 {
            writer.flush()?;
        }
        Ok(())
    })?;
    writer.flush()?;
    drop(writer);
    std::fs::rename(&tmp, path)
}

/// Count the complete lines of a plain file, cutting off a last line
/// without newline; keep only the first `keep` lines when there are more.
pub fn trim_lines(path: &Path, keep: Option<u64>) -> io::Result<u64> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::with_capacity(1 << 18, file);
    let (mut lines, mut len) = (0u64, 0u64);
    let mut buf = Vec::new();
    while keep != Some(lines) {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        lines += 1;
        len += n as u64;
    }
    let file = OpenOptions::new().write(true).open(path)?;
    if file.metadata()?.len() != len {
        file.set_len(len)?;
    }
    Ok(lines)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    fn lines_of(path: &Path, c: Compression) -> (Vec<String>, ReadBack) {
        let mut out = Vec::new();
        let back = read_lines::<io::Error>(path, c, |l| {
            out.push(String::from_utf8(l.to_vec()).unwrap());
            Ok(())
        })
        .unwrap();
        (out, back)
    }

    #[test]
    fn every_flush_is_readable_and_a_cut_tail_is_dropped() {
        for c in [Compression::None, Compression::Gz, Compression::Xz] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(c.results_name());
            let mut w = ResultsWriter::open(&path, c).unwrap();
            for batch in 0..3 {
                for i in 0..100 {
                    writeln!(w.pending(), "[\"b{batch}\", {i}]").unwrap();
                }
                w.flush().unwrap();
            }
            let full = std::fs::read(&path).unwrap();
            let (lines, back) = lines_of(&path, c);
            assert_eq!((lines.len(), back.damaged), (300, false), "{c:?}");
            // Cut the file in the middle of the last flush.
            std::fs::write(&path, &full[..full.len() - 40]).unwrap();
            let (lines, back) = lines_of(&path, c);
            assert!(back.damaged, "{c:?}");
            assert!(
                lines.len() >= 200 && lines.len() <= 300,
                "{c:?} {}",
                lines.len()
            );
            assert_eq!(lines[199], "[\"b1\", 99]");
            repair(&path, c, &back).unwrap();
            let (again, back) = lines_of(&path, c);
            assert_eq!((again, back.damaged), (lines, false), "{c:?}");
        }
    }

    #[test]
    fn trim_lines_cuts_partial_and_extra_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("part");
        std::fs::write(&p, "a\nbb\nccc\ndd").unwrap();
        assert_eq!(trim_lines(&p, None).unwrap(), 3);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a\nbb\nccc\n");
        assert_eq!(trim_lines(&p, Some(2)).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a\nbb\n");
        assert_eq!(trim_lines(&dir.path().join("none"), None).unwrap(), 0);
    }
}
