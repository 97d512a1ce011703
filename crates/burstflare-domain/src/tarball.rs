//! Writing tar archives a piece at a time (snapshot downloads): ustar headers,
//! with GNU long-name (`L`) and long-link (`K`) records for paths and symlink
//! targets longer than the 100 bytes a ustar field holds. Pure: the caller
//! streams each header, the file's content and [`padding`], and [`END`]
//! after the last entry. GNU tar, bsdtar and the `tar` crate read the result.

/// What a header describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    File,
    Dir,
    Symlink,
}

/// The end of an archive: two zero blocks.
pub const END: [u8; 1024] = [0; 1024];

const BLOCK: usize = 512;

/// Zero bytes that complete a file of `size` bytes to a whole block.
pub fn padding(size: u64) -> Vec<u8> {
    let rest = (size % BLOCK as u64) as usize;
    if rest == 0 {
        Vec::new()
    } else {
        vec![0; BLOCK - rest]
    }
}

fn octal(field: &mut [u8], value: u64) {
    // NUL-terminated, zero-padded octal.
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    let bytes = text.as_bytes();
    let start = bytes.len().saturating_sub(digits);
    field[..digits].copy_from_slice(&bytes[start..]);
    field[digits] = 0;
}

fn block(name: &[u8], mode: u32, size: u64, mtime: i64, kind: u8, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0_u8; BLOCK];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(mode & 0o7777));
    octal(&mut h[108..116], 1000);
    octal(&mut h[116..124], 1000);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], u64::try_from(mtime).unwrap_or(0));
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..268].copy_from_slice(b"dev");
    h[297..300].copy_from_slice(b"dev");
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

/// A GNU long-name or long-link record carrying `value`.
fn long(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut data = value.to_vec();
    data.push(0);
    let mut out = block(b"././@LongLink", 0, data.len() as u64, 0, kind, b"").to_vec();
    let pad = padding(data.len() as u64);
    out.extend_from_slice(&data);
    out.extend_from_slice(&pad);
    out
}

/// The header (and long-name records) of one entry. `path` is relative
/// (directories get a trailing `/`); `size` is the content that follows
/// (files only); `target` is a symlink's.
pub fn header(
    path: &str,
    kind: EntryType,
    mode: u32,
    mtime: i64,
    size: u64,
    target: &str,
) -> Vec<u8> {
    let mut name = path.to_owned();
    if kind == EntryType::Dir && !name.ends_with('/') {
        name.push('/');
    }
    let (flag, size) = match kind {
        EntryType::File => (b'0', size),
        EntryType::Dir => (b'5', 0),
        EntryType::Symlink => (b'2', 0),
    };
    let mut out = Vec::new();
    if name.len() > 100 {
        out.extend(long(b'L', name.as_bytes()));
    }
    if target.len() > 100 {
        out.extend(long(b'K', target.as_bytes()));
    }
    out.extend_from_slice(&block(
        name.as_bytes(),
        mode,
        size,
        mtime,
        flag,
        target.as_bytes(),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn archives_read_back_with_long_names() {
        let long_dir = "d".repeat(120);
        let long_target = format!("../{}", "t".repeat(150));
        let mut tar = Vec::new();
        tar.extend(header(
            "home/dev",
            EntryType::Dir,
            0o755,
            1_700_000_000,
            0,
            "",
        ));
        tar.extend(header(
            &format!("home/dev/{long_dir}"),
            EntryType::Dir,
            0o700,
            1_700_000_001,
            0,
            "",
        ));
        let body = b"hello, world\n";
        tar.extend(header(
            &format!("home/dev/{long_dir}/f.txt"),
            EntryType::File,
            0o640,
            1_700_000_002,
            body.len() as u64,
            "",
        ));
        tar.extend_from_slice(body);
        tar.extend(padding(body.len() as u64));
        tar.extend(header(
            "home/dev/link",
            EntryType::Symlink,
            0o777,
            1_700_000_003,
            0,
            &long_target,
        ));
        tar.extend_from_slice(&END);

        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut e = entry.unwrap();
            let path = e
                .path()
                .unwrap()
                .display()
                .to_string()
                .trim_end_matches('/')
                .to_owned();
            let kind = e.header().entry_type();
            let mode = e.header().mode().unwrap();
            let mtime = e.header().mtime().unwrap();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            seen.push((path, kind, mode, mtime, link, content));
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0].0, "home/dev");
        assert!(seen[0].1.is_dir());
        assert_eq!(seen[1].0, format!("home/dev/{long_dir}"));
        assert_eq!(seen[1].2, 0o700);
        assert_eq!(seen[2].0, format!("home/dev/{long_dir}/f.txt"));
        assert_eq!((seen[2].2, seen[2].3), (0o640, 1_700_000_002));
        assert_eq!(seen[2].5, body);
        assert!(seen[3].1.is_symlink());
        assert_eq!(seen[3].4, long_target);
    }

    #[test]
    fn padding_completes_blocks() {
        assert!(padding(0).is_empty());
        assert_eq!(padding(1).len(), 511);
        assert!(padding(512).is_empty());
        assert_eq!(padding(513).len(), 511);
    }
}
