//! The results file of a store (`results.jsonl`, `.jsonl.gz`, `.jsonl.xz`):
//! batched appends where every flush is a complete gzip member or xz stream,
//! and reading back every complete line of a store that may have been cut
//! off by a crash.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
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

/// A pending buffer that grew past this (for a long line) is given back
/// after its flush; the ingest writes one out at once past it.
pub const HOLD_MAX: usize = 8 << 20;

/// Appends lines to a results file; each [`ResultsWriter::flush`] writes
/// the lines collected since the last one in one `write`, as one gzip
/// member or xz stream when compressed, so the file is always a sequence of
/// complete members (concatenated members and streams are valid files).
#[derive(Debug)]
pub struct ResultsWriter {
    file: File,
    /// The file's length after the last complete flush.
    len: u64,
    path: PathBuf,
    compression: Compression,
    pending: Vec<u8>,
}

impl ResultsWriter {
    /// Append to `path` (created if missing).
    pub fn open(path: &Path, compression: Compression) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(ResultsWriter {
            file,
            len,
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

    /// Write what is pending. A write that fails (a full disk) is undone,
    /// so the file never keeps half a flush.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let written = match self.compression {
            Compression::None => self
                .file
                .write_all(&self.pending)
                .map(|()| self.pending.len()),
            c => c
                .compress(&self.pending)
                .and_then(|data| self.file.write_all(&data).map(|()| data.len())),
        };
        match written {
            // One writer appends: the file grew by what was written.
            Ok(n) => self.len += n as u64,
            Err(e) => {
                // Best effort: if even this fails, the next --append cuts
                // the half flush off when it reads the file back.
                let _ = self.file.set_len(self.len);
                return Err(e);
            }
        }
        self.pending.clear();
        // What a long line grew is given back.
        if self.pending.capacity() > HOLD_MAX {
            self.pending = Vec::with_capacity(1 << 20);
        }
        Ok(())
    }
}

/// What reading a results file back found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// Complete lines read (blank lines included).
    pub lines: u64,
    /// Whether the file ends in a cut-off line or holds a truncated,
    /// damaged or foreign part: what a killed writer or a full disk leaves.
    pub damaged: bool,
    /// For an uncompressed file, the length of its complete lines.
    pub valid_len: u64,
    /// The file's length when it was read.
    pub file_len: u64,
    /// Bytes of the file that gave no line: a cut-off line, a damaged
    /// member or stream, garbage between or after them.
    pub unreadable: u64,
}

/// Call `each` with every complete line of the results file at `path`
/// (without its newline), skipping what cannot be read (see
/// [`ReadBack::damaged`]); `each` may stop the reading with an error.
///
/// A compressed file is read one gzip member or xz stream at a time, so a
/// damaged one costs only its own lines: the reading resumes at the next
/// member's magic bytes. A member's lines count once it decoded whole
/// (its checksum matched), except for the file's last member, whose
/// complete lines are kept when it is cut off (what a kill in the middle
/// of a flush leaves).
pub fn read_lines<E: From<io::Error>>(
    path: &Path,
    compression: Compression,
    each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<ReadBack, E> {
    read_lines_from(path, compression, 0, each)
}

/// [`read_lines`] from byte `from` of an uncompressed file (where an
/// earlier reading's [`ReadBack::valid_len`] ended), to read on as the
/// file grows; `valid_len` and `unreadable` then count from there. A
/// compressed file is always read whole (`from` is ignored).
pub fn read_lines_from<E: From<io::Error>>(
    path: &Path,
    compression: Compression,
    from: u64,
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<ReadBack, E> {
    let mut file = File::open(path)?;
    let file_len = file.metadata()?.len();
    if compression != Compression::None {
        return read_members(file, file_len, compression, &mut each);
    }
    if from > 0 {
        file.seek(io::SeekFrom::Start(from))?;
    }
    let mut reader = BufReader::with_capacity(1 << 18, file);
    let mut back = ReadBack {
        file_len,
        ..ReadBack::default()
    };
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
            Err(e) => return Err(e.into()),
        }
    }
    back.unreadable = file_len.saturating_sub(from).saturating_sub(back.valid_len);
    Ok(back)
}

/// A member's output held back until its checksum is checked, at most
/// this much: past it the member is taken as genuine (a false magic
/// does not decode megabytes) and its lines go out as they come.
const MEMBER_HOLD: usize = 2 << 20;

/// The first bytes of a gzip member (with the deflate method) and of an
/// xz stream.
fn magic(c: Compression) -> &'static [u8] {
    match c {
        Compression::Gz => &[0x1f, 0x8b, 0x08],
        Compression::Xz => &[0xfd, b'7', b'z', b'X', b'Z', 0],
        Compression::None => &[],
    }
}

/// A buffered file reader that knows its position, so the end of each
/// member is known (flate2's and lzma-rust2's decoders read a member's
/// bytes and no more).
struct Tracked {
    inner: BufReader<File>,
    pos: u64,
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl BufRead for Tracked {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount);
        self.pos += amount as u64;
    }
}

impl Tracked {
    fn seek_to(&mut self, pos: u64) -> io::Result<()> {
        if pos == self.pos {
            // Already there: keep what is buffered.
            return Ok(());
        }
        self.inner.seek(io::SeekFrom::Start(pos))?;
        self.pos = pos;
        Ok(())
    }

    /// Where the next `magic` starts, at `from` or later.
    fn find(&mut self, from: u64, magic: &[u8]) -> io::Result<Option<u64>> {
        self.seek_to(from)?;
        let mut window: Vec<u8> = Vec::with_capacity(1 << 16);
        let mut window_start = from;
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let n = buf.len();
            window.extend_from_slice(buf);
            self.consume(n);
            if let Some(i) = window.windows(magic.len()).position(|w| w == magic) {
                return Ok(Some(window_start + i as u64));
            }
            // Keep the last bytes: a magic may straddle two reads.
            let keep = window.len().min(magic.len() - 1);
            window_start += (window.len() - keep) as u64;
            window.drain(..window.len() - keep);
        }
    }
}

/// Complete lines out of decoded bytes, a line possibly spanning members.
struct Lines {
    /// The line being assembled.
    line: Vec<u8>,
    lines: u64,
}

impl Lines {
    fn feed<E>(
        &mut self,
        data: &[u8],
        each: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = data;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(i);
            if self.line.is_empty() {
                each(head)?;
            } else {
                self.line.extend_from_slice(head);
                each(&self.line)?;
                self.line.clear();
            }
            self.lines += 1;
            rest = &tail[1..];
        }
        self.line.extend_from_slice(rest);
        Ok(())
    }
}

/// How decoding one member went.
enum Member {
    /// Decoded whole, checksum matched.
    Whole,
    /// Cut off (`true`: its bytes ran out) or damaged.
    Broken(bool),
}

/// Decode the member at the reader's position into `held`, passing its
/// lines on once more than [`MEMBER_HOLD`] is held.
fn decode_member<E>(
    t: &mut Tracked,
    c: Compression,
    held: &mut Vec<u8>,
    lines: &mut Lines,
    each: &mut impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Member, E> {
    let mut decoder: Box<dyn Read + '_> = match c {
        Compression::Gz => Box::new(flate2::bufread::GzDecoder::new(&mut *t)),
        Compression::Xz => Box::new(XzReader::new(&mut *t, false)),
        Compression::None => Box::new(&mut *t),
    };
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match decoder.read(&mut chunk) {
            Ok(0) => return Ok(Member::Whole),
            Ok(n) => {
                held.extend_from_slice(&chunk[..n]);
                if held.len() > MEMBER_HOLD {
                    lines.feed(held, each)?;
                    held.clear();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Every other error is the member's: cut off, a bad header,
            // a bad checksum, an I/O error of its bytes.
            Err(e) => return Ok(Member::Broken(e.kind() == io::ErrorKind::UnexpectedEof)),
        }
    }
}

/// [`read_lines`] of a compressed file: member by member, resuming after
/// damage at the next magic.
fn read_members<E: From<io::Error>>(
    file: File,
    file_len: u64,
    c: Compression,
    each: &mut impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<ReadBack, E> {
    let magic = magic(c);
    let mut t = Tracked {
        inner: BufReader::with_capacity(1 << 18, file),
        pos: 0,
    };
    let mut back = ReadBack {
        file_len,
        ..ReadBack::default()
    };
    let mut lines = Lines {
        line: Vec::new(),
        lines: 0,
    };
    let mut held = Vec::new();
    // Bytes that gave lines: whole members, and a cut-off last one.
    let mut readable = 0u64;
    let mut pos = 0u64;
    loop {
        // xz allows zero padding between streams.
        t.seek_to(pos)?;
        if c == Compression::Xz {
            loop {
                let buf = t.fill_buf()?;
                let zeros = buf.iter().take_while(|&&b| b == 0).count();
                if zeros == 0 {
                    break;
                }
                t.consume(zeros);
                readable += zeros as u64;
            }
        }
        let start = t.pos;
        if start >= file_len {
            break;
        }
        let at_magic = {
            let buf = t.fill_buf()?;
            buf.len() >= magic.len() && buf.starts_with(magic)
        };
        let member_start = if at_magic {
            Some(start)
        } else {
            // Garbage where a member should start: look further.
            back.damaged = true;
            t.find(start + 1, magic)?
        };
        let Some(member_start) = member_start else {
            break;
        };
        t.seek_to(member_start)?;
        held.clear();
        let member = decode_member(&mut t, c, &mut held, &mut lines, each)?;
        // A member that ends where it starts would be read forever.
        let member = if t.pos > member_start {
            member
        } else {
            Member::Broken(false)
        };
        match member {
            Member::Whole => {
                lines.feed(&held, each)?;
                readable += t.pos - member_start;
                pos = t.pos;
            }
            Member::Broken(cut_off) => {
                back.damaged = true;
                match t.find(member_start + 1, magic)? {
                    Some(next) => {
                        // Its decoded bytes may hold garbage: only a
                        // member that decoded whole counts; the line it
                        // was in is lost with it.
                        lines.line.clear();
                        pos = next;
                    }
                    None => {
                        // The last member, cut off (what a kill in the
                        // middle of a flush leaves): its complete lines
                        // (its bytes count as unreadable all the same). A
                        // bad checksum says its output is not to be
                        // trusted: dropped.
                        if cut_off {
                            lines.feed(&held, each)?;
                        }
                        break;
                    }
                }
            }
        }
    }
    if !lines.line.is_empty() {
        back.damaged = true;
    }
    back.lines = lines.lines;
    back.unreadable = file_len.saturating_sub(readable);
    Ok(back)
}

/// Which results file the store `dir` has, if any.
pub fn find_results(dir: &Path) -> Option<(PathBuf, Compression)> {
    [Compression::None, Compression::Gz, Compression::Xz]
        .into_iter()
        .map(|c| (dir.join(c.results_name()), c))
        .find(|(p, _)| p.exists())
}

/// Make a damaged results file whole again (see [`read_lines`]), keeping
/// the file as it was in `aside_dir` first, so that nothing stored is
/// lost even when what could not be read is wanted later. An uncompressed
/// file is cut after its last complete line (its cut-off tail is what is
/// kept aside); a compressed one is rewritten with every line read (a
/// temp file in `aside_dir`, renamed over) and the original kept as a
/// hard link (no copy). Returns where the original (or tail) was kept.
///
/// The caller must not hold the file open for writing across this: a
/// writer would keep appending to the replaced file.
pub fn repair(
    path: &Path,
    compression: Compression,
    back: &ReadBack,
    aside_dir: &Path,
) -> io::Result<Option<PathBuf>> {
    if !back.damaged {
        return Ok(None);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "results".to_owned());
    let aside = (1u32..)
        .map(|n| aside_dir.join(format!("damaged-{name}.{n}")))
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .ok_or_else(|| io::Error::other("no free name for the damaged file"))?;
    if compression == Compression::None {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        file.seek(io::SeekFrom::Start(back.valid_len))?;
        let mut tail = Vec::new();
        (&mut file).take(back.unreadable).read_to_end(&mut tail)?;
        std::fs::write(&aside, &tail)?;
        file.set_len(back.valid_len)?;
        return Ok(Some(aside));
    }
    if std::fs::hard_link(path, &aside).is_err() {
        std::fs::copy(path, &aside)?;
    }
    let tmp = aside_dir.join(format!("{name}.repair.tmp"));
    let rewritten = rewrite(path, compression, &tmp);
    if rewritten.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    rewritten?;
    std::fs::rename(&tmp, path)?;
    Ok(Some(aside))
}

/// Write every line [`read_lines`] gives of `path` into a new file `tmp`.
fn rewrite(path: &Path, compression: Compression, tmp: &Path) -> io::Result<()> {
    let _ = std::fs::remove_file(tmp);
    let mut writer = ResultsWriter::open(tmp, compression)?;
    read_lines::<io::Error>(path, compression, |line| {
        writer.pending().extend_from_slice(line);
        writer.pending().push(b'\n');
        if writer.pending_len() >= 1 << 20 {
            writer.flush()?;
        }
        Ok(())
    })?;
    writer.flush()?;
    writer.file.sync_all()
}

/// Cut the file at `path` to its first `len` bytes.
pub fn trim_to(path: &Path, len: u64) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.set_len(len)
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
            repair(&path, c, &back, dir.path()).unwrap();
            let (again, back) = lines_of(&path, c);
            assert_eq!((again, back.damaged), (lines, false), "{c:?}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever bytes overwrite part of one member, the reading ends
        /// and every other member's lines come back, in order.
        #[test]
        fn damage_costs_only_the_damaged_member(
            xz in any::<bool>(),
            damaged in 0usize..5,
            at in 0.0f64..1.0,
            garbage in proptest::collection::vec(any::<u8>(), 1..64),
            cut in any::<bool>(),
        ) {
            let c = if xz { Compression::Xz } else { Compression::Gz };
            // Compressed once: xz is slow in a debug build.
            static MEMBERS: std::sync::OnceLock<[Vec<Vec<u8>>; 2]> = std::sync::OnceLock::new();
            let members = MEMBERS.get_or_init(|| {
                [Compression::Gz, Compression::Xz].map(|c| {
                    (0..5)
                        .map(|m| {
                            let text: String =
                                (0..50).map(|i| format!("[\"m{m}\", {i}]\n")).collect();
                            c.compress(text.as_bytes()).unwrap()
                        })
                        .collect()
                })
            });
            let member = |m: usize| members[usize::from(xz)][m].clone();
            let mut bytes = Vec::new();
            for m in 0..5 {
                let mut data = member(m);
                if m == damaged {
                    let from = ((data.len() as f64 * at) as usize).min(data.len() - 1);
                    if cut && m == 4 {
                        data.truncate(from);
                    } else {
                        let to = (from + garbage.len()).min(data.len());
                        data[from..to].copy_from_slice(&garbage[..to - from]);
                    }
                }
                bytes.extend_from_slice(&data);
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(c.results_name());
            std::fs::write(&path, &bytes).unwrap();
            let (lines, _) = lines_of(&path, c);
            let of = |ms: std::ops::Range<usize>| -> Vec<String> {
                ms.flat_map(|m| (0..50).map(move |i| format!("[\"m{m}\", {i}]")))
                    .collect()
            };
            let (before, after) = (of(0..damaged), of(damaged + 1..5));
            // The members before the damaged one come first, the ones
            // after it last, exactly; between them whatever the damaged
            // member gives back (garbage when its damage decodes: deflate
            // has no checksum of its own until the member's end).
            prop_assert!(lines.len() >= before.len() + after.len());
            prop_assert_eq!(&lines[..before.len()], &before[..]);
            prop_assert_eq!(&lines[lines.len() - after.len()..], &after[..]);
            let others = before;
            if cut && damaged == 4 {
                // A cut-off last member: its complete lines, nothing else.
                let (head, tail) = lines.split_at(others.len());
                prop_assert_eq!(head, &others[..]);
                for (i, l) in tail.iter().enumerate() {
                    prop_assert_eq!(l, &format!("[\"m4\", {i}]"));
                }
            }
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
