//! Reading one file out of an npm package tarball (a gzip'd tar with a `package/` prefix).

use std::io::Read;

use flate2::read::GzDecoder;

/// The largest schema file read: a tarball passes its integrity check whatever it holds, so this
/// bounds what a hostile but correctly hashed tarball can make us allocate.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The bytes of the entry at `path` (e.g. `package/configuration-schema.json`), or `None` when the
/// tarball has no such file.
pub(crate) fn read_file(tgz: &[u8], path: &str) -> std::io::Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(GzDecoder::new(tgz));
    for entry in archive.entries()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() || entry.path_bytes().as_ref() != path.as_bytes()
        {
            continue;
        }
        if entry.size() > MAX_FILE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{path} is larger than {MAX_FILE_BYTES} bytes"),
            ));
        }
        let mut bytes = Vec::new();
        entry.take(MAX_FILE_BYTES).read_to_end(&mut bytes)?;
        return Ok(Some(bytes));
    }
    Ok(None)
}
