//! A disk that fills up: a small tmpfs mounted on a directory, which a test fills with a
//! filler file and frees again. Mounting needs root; where it is not allowed the test says so
//! and does not run, except under `CI=true`, where that is a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A 16 MiB tmpfs mounted on a directory (room for a few journal segments once freed);
/// unmounted when dropped.
pub struct FullDisk {
    dir: PathBuf,
    filler: PathBuf,
}

impl FullDisk {
    /// Mounts the tmpfs on `dir` (created if missing), or returns `None` with a note.
    pub fn mount(dir: &Path) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
            .arg(dir)
            .output();
        let refused = match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = refused {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI=true but a tmpfs cannot be mounted to fill a disk (needs root): {why}"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs to fill a disk (needs root): {why}");
            return None;
        }
        Some(Self {
            filler: dir.join("filler"),
            dir: dir.to_path_buf(),
        })
    }

    /// Writes the filler until the disk has no space left; twice, a moment apart, so a page
    /// freed meanwhile is taken too.
    pub fn fill(&self) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .unwrap();
        for _ in 0..2 {
            let chunk = vec![0u8; 4096];
            loop {
                match f.write(&chunk) {
                    Ok(n) if n == chunk.len() => {}
                    Ok(_) => continue,
                    Err(e) if e.raw_os_error() == Some(28) => break,
                    Err(e) => panic!("filling the disk: {e}"),
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Removes the filler.
    pub fn free(&self) {
        std::fs::remove_file(&self.filler).unwrap();
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
