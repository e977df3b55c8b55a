//! Sampling the proxy's resident memory (VmRSS from `/proc/<pid>/status`) while a run goes on.

use std::{io, time::Duration};

use tokio::{sync::oneshot, task::JoinHandle};

use super::report::MemorySummary;

/// How often the sampler reads VmRSS.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// Reads the resident set size of `pid` in KiB.
pub fn read_rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no VmRSS line in /proc/{pid}/status"),
        )
    })
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's RSS on a background task until [`MemorySampler::finish`].
pub struct MemorySampler {
    pid: u32,
    start_kib: u64,
    stop: oneshot::Sender<()>,
    task: JoinHandle<(u64, usize)>,
}

impl MemorySampler {
    /// Takes the start sample (failing if the process cannot be read) and starts sampling.
    pub fn start(pid: u32) -> io::Result<Self> {
        let start_kib = read_rss_kib(pid)?;
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let (mut max, mut samples) = (start_kib, 1);
            let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
            loop {
                tokio::select! {
                    _ = &mut stopped => return (max, samples),
                    _ = ticks.tick() => {
                        if let Ok(rss) = read_rss_kib(pid) {
                            max = max.max(rss);
                            samples += 1;
                        }
                    }
                }
            }
        });
        Ok(Self {
            pid,
            start_kib,
            stop,
            task,
        })
    }

    /// Stops sampling and takes the end sample.
    pub async fn finish(self) -> MemorySummary {
        let _ = self.stop.send(());
        let (max, samples) = self.task.await.unwrap_or((self.start_kib, 1));
        let end_kib = read_rss_kib(self.pid).unwrap_or(self.start_kib);
        MemorySummary {
            pid: self.pid,
            samples: samples + 1,
            start_kib: self.start_kib,
            end_kib,
            max_kib: max.max(end_kib),
            delta_kib: end_kib as i64 - self.start_kib as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tsluice\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[tokio::test]
    async fn samples_this_process() {
        let sampler = MemorySampler::start(std::process::id()).unwrap();
        tokio::time::sleep(SAMPLE_INTERVAL * 2).await;
        let summary = sampler.finish().await;
        assert!(summary.start_kib > 0);
        assert!(summary.samples >= 3, "{summary:?}");
        assert!(summary.max_kib >= summary.start_kib.max(summary.end_kib));
        assert!(read_rss_kib(u32::MAX).is_err());
    }
}
