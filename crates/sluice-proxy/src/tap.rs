//! The body tap: passes every chunk on unchanged while hashing it, counting it, keeping the
//! first bytes as a preview and enforcing the idle timeout between chunks.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use sluice_core::outcome::BodyFailure;
use sluice_core::BodyObservation;
use tokio::time::Sleep;

/// Boxed error type carried by tapped bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body as sent to the sink.
pub type OutboundBody = Tap<axum::body::Body>;

/// How a tapped body stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapEnd {
    /// Still streaming (or, when reported at drop, abandoned before its end).
    Open,
    /// Every byte passed.
    Complete,
    /// The source failed.
    SourceError,
    /// The idle timeout fired.
    Idle,
}

/// What a tap has seen so far; shared with whoever finishes the exchange.
pub struct TapState {
    hasher: Sha256,
    preview: Vec<u8>,
    preview_cap: usize,
    size: u64,
    truncated: bool,
    /// How the body ended.
    pub end: TapEnd,
    /// Why its source failed (with `TapEnd::SourceError`).
    pub failure: Option<BodyFailure>,
    /// Most bytes let through; past it the body fails as `BodyFailure::TooLarge`.
    limit: Option<u64>,
    /// When it ended.
    pub ended_at: Option<Instant>,
}

impl TapState {
    /// A fresh state keeping at most `preview_cap` bytes.
    pub fn new(preview_cap: usize) -> Self {
        Self {
            hasher: Sha256::new(),
            preview: Vec::new(),
            preview_cap,
            size: 0,
            truncated: false,
            end: TapEnd::Open,
            failure: None,
            limit: None,
            ended_at: None,
        }
    }

    /// This state, failing its body once more than `limit` bytes have passed.
    pub fn with_limit(mut self, limit: Option<u64>) -> Self {
        self.limit = limit;
        self
    }

    fn over_limit(&self) -> bool {
        self.limit.is_some_and(|max| self.size > max)
    }

    fn observe(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        let room = self.preview_cap - self.preview.len();
        if chunk.len() > room {
            self.truncated = true;
        }
        self.preview
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    fn finish(&mut self, end: TapEnd) {
        if self.end == TapEnd::Open {
            self.end = end;
            self.ended_at = Some(Instant::now());
        }
    }

    /// The observation of everything seen so far (hash of the bytes that passed).
    pub fn observation(&mut self) -> BodyObservation {
        let hasher = std::mem::take(&mut self.hasher);
        // Into a fixed buffer: `hex::encode` pushes the 64 characters one `char` at a time.
        let mut digest_hex = [0u8; 64];
        hex::encode_to_slice(hasher.finalize(), &mut digest_hex).expect("64 bytes hold 32 in hex");
        BodyObservation {
            sha256: std::str::from_utf8(&digest_hex)
                .expect("hex is ASCII")
                .to_string(),
            size: self.size as i64,
            preview: std::mem::take(&mut self.preview),
            truncated: self.truncated,
        }
    }
}

/// Shared handle to a [`TapState`].
pub type SharedTap = Arc<Mutex<TapState>>;

/// Called once when a tapped body ends, fails or is dropped unfinished.
pub type OnEnd = Box<dyn FnOnce(TapEnd, Option<BodyFailure>) + Send>;

/// A body wrapper that observes every chunk.
pub struct Tap<B> {
    inner: B,
    state: SharedTap,
    idle: Duration,
    /// When the idle timeout fires unless a chunk comes first; moved on by every chunk.
    deadline: tokio::time::Instant,
    /// The timer, made when the body first has to wait: most small bodies never do, and
    /// arming a timer takes a lock in the runtime's timer wheel (and another to drop it).
    sleep: Option<Pin<Box<Sleep>>>,
    on_end: Option<OnEnd>,
}

impl<B: Body> Tap<B> {
    /// Wraps `inner`, recording into `state`, failing after `idle` without a chunk.
    pub fn new(inner: B, state: SharedTap, idle: Duration, on_end: Option<OnEnd>) -> Self {
        let mut tap = Self {
            inner,
            state,
            idle,
            deadline: tokio::time::Instant::now() + idle,
            sleep: None,
            on_end,
        };
        // An empty body has ended already: its exchange is finished (and its outcome recorded)
        // before the caller is answered, not when the body is dropped after.
        if tap.inner.is_end_stream() {
            tap.end(TapEnd::Complete);
        }
        tap
    }

    fn end(&mut self, how: TapEnd) {
        let failure = {
            let mut state = self.state.lock();
            state.finish(how);
            state.failure
        };
        if let Some(f) = self.on_end.take() {
            f(how, failure);
        }
    }
}

impl<B> Body for Tap<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let mut state = this.state.lock();
                    state.observe(data);
                    if state.over_limit() {
                        state.failure = Some(BodyFailure::TooLarge);
                        drop(state);
                        this.end(TapEnd::SourceError);
                        return Poll::Ready(Some(Err(
                            "request body over the channel's limit".into()
                        )));
                    }
                }
                if this.inner.is_end_stream() {
                    this.end(TapEnd::Complete);
                }
                this.deadline = tokio::time::Instant::now() + this.idle;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                this.state.lock().failure = Some(BodyFailure::of(&*e));
                this.end(TapEnd::SourceError);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.end(TapEnd::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.end(TapEnd::Idle);
                        Poll::Ready(Some(Err("body idle timeout".into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Tap<B> {
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            // `Open` here means the reader went away before the end (for a response: the
            // caller hung up); a body with nothing left was marked complete already.
            let (how, failure) = {
                let state = self.state.lock();
                (state.end, state.failure)
            };
            f(how, failure);
        }
    }
}
