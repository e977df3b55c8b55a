//! A finished request on its way from the proxy thread that finished it to the SQLite history
//! thread, packed into one buffer ([`Packed`]), and as the history thread unpacks it
//! ([`Completion`]).
//!
//! A block of memory freed by a thread other than the one that allocated it goes back to its
//! owner's allocator through an atomic list, and the owner reuses it cold: on these VMs a cache
//! line moves between two cores in ~170 ns. Sent as they were, a record's texts and its event's
//! parts were eleven such blocks per request. Packed, the parts are freed where they were
//! allocated, and one buffer crosses: the event as the frame the event files take
//! ([`crate::event_codec`]), then the record's texts, which the history thread unpacks into
//! allocations of its own (docs/BENCHMARKS.md, tuning steps 33 and 35).

use sluice_core::{EventRecord, RequestRecord};

use crate::event_codec;

/// Length prefix of a text that is `None`.
const ABSENT: u32 = u32::MAX;

/// A finished request and its event as they cross to the history thread: the record without
/// its texts, and one buffer holding the event's frame and then the texts.
pub(crate) struct Packed {
    record: RequestRecord,
    buf: Vec<u8>,
    /// Length of the frame at the start of `buf` (0: no event).
    frame_len: usize,
}

/// A finished request and its event's frame, unpacked on the history thread.
pub(crate) struct Completion {
    /// The finished request.
    pub(crate) record: RequestRecord,
    /// The event's frame (empty: no event).
    frame: Vec<u8>,
}

/// The record's text fields, in their order in the buffer.
fn texts(r: &mut RequestRecord) -> [&mut String; 4] {
    [
        &mut r.request_id,
        &mut r.client_identity,
        &mut r.method,
        &mut r.path,
    ]
}

/// The record's optional text fields, in their order in the buffer after [`texts`].
fn optional_texts(r: &mut RequestRecord) -> [&mut Option<String>; 3] {
    [&mut r.source_auth_type, &mut r.query, &mut r.error]
}

impl Packed {
    /// Packs `record` and its `event` into one buffer, freeing their parts on this thread.
    pub(crate) fn new(mut record: RequestRecord, event: Option<EventRecord>) -> Self {
        let frame_len = event.as_ref().map_or(0, event_codec::frame_len);
        let texts_len: usize = texts(&mut record)
            .iter()
            .map(|t| 4 + t.len())
            .sum::<usize>()
            + optional_texts(&mut record)
                .iter()
                .map(|t| 4 + t.as_ref().map_or(0, String::len))
                .sum::<usize>();
        let mut buf = Vec::with_capacity(frame_len + texts_len);
        if let Some(e) = &event {
            event_codec::encode(e, &mut buf);
        }
        for t in texts(&mut record) {
            put_text(&mut buf, Some(&std::mem::take(t)));
        }
        for t in optional_texts(&mut record) {
            put_text(&mut buf, t.take().as_deref());
        }
        Self {
            record,
            buf,
            frame_len,
        }
    }

    /// Puts the record's texts back into it, in allocations of this thread's, keeping only the
    /// frame in the buffer.
    pub(crate) fn unpack(self) -> Completion {
        let Self {
            mut record,
            mut buf,
            frame_len,
        } = self;
        let mut rest = &buf[frame_len..];
        for t in texts(&mut record) {
            *t = take_text(&mut rest).unwrap_or_default();
        }
        for t in optional_texts(&mut record) {
            *t = take_text(&mut rest);
        }
        buf.truncate(frame_len);
        Completion { record, frame: buf }
    }
}

impl Completion {
    /// The event's frame, if the exchange got that far to have one.
    pub(crate) fn frame(&self) -> Option<&[u8]> {
        (!self.frame.is_empty()).then_some(&self.frame[..])
    }
}

/// Appends `text` with its length (or [`ABSENT`]).
fn put_text(buf: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(t) => event_codec::put_bytes(buf, t.as_bytes()),
        None => buf.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// Takes the text [`put_text`] appended at the start of `rest`.
fn take_text(rest: &mut &[u8]) -> Option<String> {
    let (len, tail) = rest.split_at(4);
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes"));
    if len == ABSENT {
        *rest = tail;
        return None;
    }
    let (text, tail) = tail.split_at(len as usize);
    *rest = tail;
    Some(
        std::str::from_utf8(text)
            .expect("packed from a String")
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use sluice_core::{BodyObservation, HeaderList, RequestState};
    use uuid::Uuid;

    use super::*;

    fn record(optional: Option<&str>) -> RequestRecord {
        RequestRecord {
            id: Uuid::now_v7(),
            request_id: "req-é-1".into(),
            channel_id: Uuid::now_v7(),
            snapshot_id: Uuid::now_v7(),
            state: RequestState::Success,
            started_at: 1,
            completed_at: Some(2),
            client_identity: "10.0.0.1".into(),
            source_auth_method_id: None,
            source_auth_type: optional.map(|s| format!("{s}-auth")),
            method: "POST".into(),
            path: String::new(),
            query: optional.map(|s| format!("q={s}")),
            response_status: Some(201),
            error: optional.map(str::to_owned),
            latency_us: Some(3),
            ttfb_us: Some(2),
            request_body_size: Some(4),
            response_body_size: Some(5),
        }
    }

    #[test]
    fn a_packed_completion_unpacks_to_the_record_and_the_frame_of_its_event() {
        let event = EventRecord {
            request_id: Uuid::now_v7(),
            request_headers: HeaderList::from_pairs([("content-type", "text/plain")]),
            request_body: BodyObservation {
                sha256: "ab".repeat(32),
                size: 3,
                preview: b"abc".to_vec(),
                truncated: false,
            },
            ..EventRecord::default()
        };
        for optional in [None, Some("x"), Some("")] {
            let original = record(optional);
            let packed = Packed::new(original.clone(), Some(event.clone()));
            assert_eq!(packed.record.request_id, "", "texts travel in the buffer");
            assert_eq!(packed.buf.len(), packed.buf.capacity(), "sized exactly");
            let done = packed.unpack();
            assert_eq!(done.record, original);
            let frame = done.frame().expect("an event was packed");
            assert_eq!(event_codec::decode(frame).unwrap(), event);
        }
        let original = record(Some("y"));
        let bare = Packed::new(original.clone(), None).unpack();
        assert_eq!(bare.record, original);
        assert!(bare.frame().is_none());
    }
}
