//! The binary form of an event in the event files of ledgers before the plain one, which the
//! upgrade reads (`crate::legacy`). The encoder is the tests' (it wrote those files).
//!
//! A frame is the payload's length and CRC-32 (both `u32`, little-endian) followed by the
//! payload: the event's fields in a fixed order, integers little-endian, text and bytes
//! prefixed with their `u32` length, optional values with a presence byte. The checksum lets a
//! reader tell a frame a power loss tore from one that was written whole.

use std::io;

use sluice_core::{BodyObservation, EventRecord, HeaderList, Timings};
use uuid::Uuid;

/// Bytes before a frame's payload: its length and its checksum.
pub(crate) const FRAME_HEAD: usize = 8;

#[cfg(test)]
/// The event's optional integers, in their order in a frame.
fn integers(event: &EventRecord) -> [Option<i64>; 7] {
    let t = &event.timings;
    [
        event.response_status.map(i64::from),
        t.latency_us,
        t.ttfb_us,
        t.connect_us,
        t.send_us,
        t.queue_us,
        t.reused_connection.map(i64::from),
    ]
}

#[cfg(test)]
/// Appends `event` to `out` as one frame.
pub(crate) fn encode(event: &EventRecord, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEAD]);
    out.extend_from_slice(event.request_id.as_bytes());
    put_bytes(out, event.request_headers.as_json().as_bytes());
    put_bytes(out, event.response_headers.as_json().as_bytes());
    put_body(out, &event.request_body);
    put_body(out, &event.response_body);
    for v in integers(event) {
        put_opt_i64(out, v);
    }
    match &event.error {
        Some(e) => {
            out.push(1);
            put_bytes(out, e.as_bytes());
        }
        None => out.push(0),
    }
    let payload = &out[start + FRAME_HEAD..];
    let len = u32::try_from(payload.len()).expect("an event is smaller than 4 GiB");
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + FRAME_HEAD].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the event in `frame` (one whole frame, as [`encode`] wrote it).
pub(crate) fn decode(frame: &[u8]) -> io::Result<EventRecord> {
    if frame.len() < FRAME_HEAD {
        return Err(invalid("event frame shorter than its head"));
    }
    let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(frame[4..FRAME_HEAD].try_into().expect("4 bytes"));
    let payload = &frame[FRAME_HEAD..];
    if payload.len() != len || crc32fast::hash(payload) != crc {
        return Err(invalid("event frame damaged (length or checksum mismatch)"));
    }
    let mut r = Reader(payload);
    let request_id = Uuid::from_slice(r.take(16)?).map_err(|_| invalid("bad event id"))?;
    let request_headers = r.headers()?;
    let response_headers = r.headers()?;
    let request_body = r.body()?;
    let response_body = r.body()?;
    let response_status = r
        .opt_i64()?
        .map(|s| u16::try_from(s).map_err(|_| invalid("bad status")))
        .transpose()?;
    let timings = Timings {
        latency_us: r.opt_i64()?,
        ttfb_us: r.opt_i64()?,
        connect_us: r.opt_i64()?,
        send_us: r.opt_i64()?,
        queue_us: r.opt_i64()?,
        reused_connection: r.opt_i64()?.map(|v| v != 0),
    };
    let error = match r.take(1)?[0] {
        0 => None,
        _ => Some(r.text()?),
    };
    if !r.0.is_empty() {
        return Err(invalid("event frame has trailing bytes"));
    }
    Ok(EventRecord {
        request_id,
        request_headers,
        response_headers,
        request_body,
        response_body,
        response_status,
        timings,
        error,
    })
}

#[cfg(test)]
/// Appends `b` prefixed with its `u32` length.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("a field is smaller than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

#[cfg(test)]
fn put_opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(0),
    }
}

#[cfg(test)]
fn put_body(out: &mut Vec<u8>, b: &BodyObservation) {
    put_bytes(out, b.sha256.as_bytes());
    out.extend_from_slice(&b.size.to_le_bytes());
    put_bytes(out, &b.preview);
    out.push(u8::from(b.truncated));
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// The unread rest of a payload.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(invalid("event frame cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i64(&mut self) -> io::Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn opt_i64(&mut self) -> io::Result<Option<i64>> {
        match self.take(1)?[0] {
            0 => Ok(None),
            _ => self.i64().map(Some),
        }
    }

    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().expect("4"));
        self.take(len as usize)
    }

    fn text(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| invalid("event text not UTF-8"))
    }

    fn headers(&mut self) -> io::Result<HeaderList> {
        HeaderList::from_json(self.text()?).map_err(|_| invalid("event headers not a list"))
    }

    fn body(&mut self) -> io::Result<BodyObservation> {
        Ok(BodyObservation {
            sha256: self.text()?,
            size: self.i64()?,
            preview: self.bytes()?.to_vec(),
            truncated: self.take(1)?[0] != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> EventRecord {
        EventRecord {
            request_id: Uuid::now_v7(),
            request_headers: HeaderList::from_pairs([("content-type", "text/plain"), ("a", "1")]),
            response_headers: HeaderList::from_pairs([("server", "sink")]),
            request_body: BodyObservation {
                sha256: "ab".repeat(32),
                size: 1 << 33,
                preview: (0..=255u8).collect(),
                truncated: true,
            },
            response_body: BodyObservation {
                sha256: "cd".repeat(32),
                size: 0,
                preview: Vec::new(),
                truncated: false,
            },
            response_status: Some(503),
            timings: Timings {
                latency_us: Some(900),
                ttfb_us: Some(-1),
                connect_us: None,
                send_us: Some(0),
                queue_us: Some(i64::MAX),
                reused_connection: Some(false),
            },
            error: Some("upstream_error: é".into()),
        }
    }

    #[test]
    fn every_field_survives_the_round_trip() {
        let mut out = vec![7, 7, 7];
        for ev in [full(), EventRecord::default()] {
            out.truncate(3);
            encode(&ev, &mut out);
            assert_eq!(decode(&out[3..]).unwrap(), ev);
        }
    }

    #[test]
    fn a_damaged_or_cut_frame_is_refused() {
        let mut out = Vec::new();
        encode(&full(), &mut out);
        for i in [0, 5, FRAME_HEAD + 20, out.len() - 1] {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "byte {i} flipped");
        }
        assert!(decode(&out[..out.len() - 1]).is_err());
        assert!(decode(&[0; 4]).is_err());
        assert!(
            decode(&[0; FRAME_HEAD]).is_err(),
            "an empty payload is no event"
        );
    }
}
