//! A pending record as the journal's JSON line, written without serde.
//!
//! Every request writes one, on the proxy thread, before a byte goes to the sink. serde_json
//! escaped each field name and value byte by byte: about 7 000 instructions a record, a tenth
//! of the proxy thread's own work per request (`bench/callgrind.sh`). Here the names are
//! constants, the ids are encoded on the stack, and a text value is copied whole unless it
//! holds a byte JSON must escape (`push_json_str`, shared with the recorded headers). The line
//! is the one serde_json writes for [`RequestRecord`], byte for byte, and is read back with it.

use sluice_core::header_list::push_json_str;
use sluice_core::RequestRecord;
use uuid::Uuid;

/// Appends `rec` to `out` as the JSON object serde_json would write for it.
pub(crate) fn encode(rec: &RequestRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    uuid(out, rec.id);
    out.extend_from_slice(b",\"request_id\":");
    push_json_str(out, &rec.request_id);
    out.extend_from_slice(b",\"channel_id\":");
    uuid(out, rec.channel_id);
    out.extend_from_slice(b",\"snapshot_id\":");
    uuid(out, rec.snapshot_id);
    out.extend_from_slice(b",\"state\":");
    push_json_str(out, rec.state.as_str());
    out.extend_from_slice(b",\"started_at\":");
    int(out, rec.started_at);
    out.extend_from_slice(b",\"completed_at\":");
    opt_int(out, rec.completed_at);
    out.extend_from_slice(b",\"client_identity\":");
    push_json_str(out, &rec.client_identity);
    out.extend_from_slice(b",\"source_auth_method_id\":");
    opt_uuid(out, rec.source_auth_method_id);
    out.extend_from_slice(b",\"source_auth_type\":");
    opt_text(out, rec.source_auth_type.as_deref());
    out.extend_from_slice(b",\"method\":");
    push_json_str(out, &rec.method);
    out.extend_from_slice(b",\"path\":");
    push_json_str(out, &rec.path);
    out.extend_from_slice(b",\"query\":");
    opt_text(out, rec.query.as_deref());
    out.extend_from_slice(b",\"response_status\":");
    opt_int(out, rec.response_status.map(i64::from));
    out.extend_from_slice(b",\"error\":");
    opt_text(out, rec.error.as_deref());
    out.extend_from_slice(b",\"latency_us\":");
    opt_int(out, rec.latency_us);
    out.extend_from_slice(b",\"ttfb_us\":");
    opt_int(out, rec.ttfb_us);
    out.extend_from_slice(b",\"request_body_size\":");
    opt_int(out, rec.request_body_size);
    out.extend_from_slice(b",\"response_body_size\":");
    opt_int(out, rec.response_body_size);
    out.push(b'}');
}

fn uuid(out: &mut Vec<u8>, id: Uuid) {
    out.push(b'"');
    out.extend_from_slice(
        id.hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    out.push(b'"');
}

fn opt_uuid(out: &mut Vec<u8>, id: Option<Uuid>) {
    match id {
        Some(id) => uuid(out, id),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_text(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn opt_int(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => int(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::pending_record;
    use sluice_core::RequestState;

    fn line(rec: &RequestRecord) -> Vec<u8> {
        let mut out = Vec::new();
        encode(rec, &mut out);
        out
    }

    #[test]
    fn a_pending_record_is_the_line_serde_json_writes() {
        let rec = pending_record("/x");
        assert_eq!(
            String::from_utf8(line(&rec)).unwrap(),
            serde_json::to_string(&rec).unwrap()
        );
    }

    #[test]
    fn text_that_json_must_escape_is_escaped_and_reads_back() {
        let mut rec = pending_record("/a \"quoted\" path\\with\tcontrol\u{1}");
        rec.request_id = "id-\u{7f}-é-\"".into();
        rec.client_identity = "203.0.113.9\n".into();
        rec.query = Some("q=\u{0}&r=ü".into());
        rec.source_auth_method_id = Some(Uuid::now_v7());
        rec.source_auth_type = Some("api_key".into());
        rec.error = Some("upstream said \"no\"".into());
        rec.state = RequestState::Error;
        rec.completed_at = Some(i64::MAX);
        rec.response_status = Some(599);
        rec.latency_us = Some(-1);
        rec.ttfb_us = Some(0);
        rec.request_body_size = Some(i64::MIN);
        rec.response_body_size = Some(1 << 40);
        let encoded = line(&rec);
        assert_eq!(encoded, serde_json::to_vec(&rec).unwrap());
        let back: RequestRecord = serde_json::from_slice(&encoded).unwrap();
        assert_eq!(back, rec);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// The hand-written encoder writes what serde_json writes, for any text and number.
            #[test]
            fn fuzz_any_record_encodes_as_serde_json_does_and_reads_back(
                path in any::<String>(),
                request_id in any::<String>(),
                client in any::<String>(),
                query in proptest::option::of(any::<String>()),
                error in proptest::option::of(any::<String>()),
                n in any::<i64>(),
                status in proptest::option::of(any::<u16>()),
            ) {
                let mut rec = pending_record("/");
                rec.path = path;
                rec.request_id = request_id;
                rec.client_identity = client;
                rec.query = query;
                rec.error = error;
                rec.latency_us = Some(n);
                rec.started_at = n;
                rec.response_status = status;
                let encoded = line(&rec);
                prop_assert_eq!(&encoded, &serde_json::to_vec(&rec).unwrap());
                let back: RequestRecord = serde_json::from_slice(&encoded).unwrap();
                prop_assert_eq!(back, rec);
            }
        }
    }
}
