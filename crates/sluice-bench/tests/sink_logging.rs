//! The mock sink logs the `x-request-id` it receives at debug level.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use clap::Parser;
use sluice_bench::sink::{self, SinkArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sink: SinkArgs,
}

/// A `MakeWriter` collecting every log line in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_the_request_id_at_debug() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let args = Cli::parse_from(["sink", "--port", "0"]).sink;
    let (addr, _server) = sink::spawn(args).await.unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/logged"))
        .header("x-request-id", "req-7f3a-logged")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|line| line.contains("req-7f3a-logged"))
        .unwrap_or_else(|| panic!("request id not logged:\n{logs}"));
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("/logged"), "{line}");
}
