//! How messages, counts and spans are shown: text for people, JSON for scripts.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use outbox_sqlx::StoredMessage;
use serde_json::{Value, json};

/// A span for people, in the units the command line takes: `7d`, `1h 30m`, `3m 12s`, `450ms`
/// (the two largest units, rounded down).
pub(crate) fn span(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let units = [
        (secs / 86_400, "d"),
        (secs / 3_600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let shown: Vec<String> = units
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    shown.join(" ")
}

/// A time for people and scripts alike: RFC 3339 in UTC, to the millisecond.
pub(crate) fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// Seconds as JSON, or null.
pub(crate) fn json_seconds(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_secs_f64()))
}

/// The payload as JSON when it is JSON, as text when it is UTF-8, and as hex otherwise, with
/// the encoding named.
fn payload(bytes: &[u8]) -> (&'static str, Value) {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        return ("json", value);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => ("text", Value::String(text.to_owned())),
        Err(_) => (
            "hex",
            Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        ),
    }
}

/// One message as a JSON object (`with_payload` adds headers and payload).
pub(crate) fn message_json(m: &StoredMessage, with_payload: bool) -> Value {
    let e = &m.envelope;
    let mut value = json!({
        "seq": e.seq,
        "id": e.id,
        "status": m.status.as_str(),
        "event_type": e.event_type,
        "key": e.partition_key,
        "aggregate_type": e.aggregate_type,
        "attempts": e.attempts,
        "created_at": time(e.created_at),
        "available_at": time(m.available_at),
        "last_error": m.last_error,
    });
    if with_payload {
        let (encoding, payload) = payload(&e.payload);
        value["headers"] = json!(e.headers);
        value["payload_encoding"] = json!(encoding);
        value["payload"] = payload;
    }
    value
}

/// One message for people, every field on a line of its own.
pub(crate) fn message_text(m: &StoredMessage) -> String {
    let e = &m.envelope;
    let now = SystemTime::now();
    let age = now.duration_since(e.created_at).unwrap_or_default();
    let mut out = format!(
        "id             {}\nseq            {}\nstatus         {}\nevent type     {}\n\
         key            {}\naggregate type {}\nattempts       {}\ncreated at     {} ({} ago)\n\
         available at   {}\nlast error     {}\n",
        e.id,
        e.seq,
        m.status,
        e.event_type,
        e.partition_key.as_deref().unwrap_or("-"),
        e.aggregate_type.as_deref().unwrap_or("-"),
        e.attempts,
        time(e.created_at),
        span(age),
        time(m.available_at),
        m.last_error.as_deref().unwrap_or("-"),
    );
    out.push_str("headers\n");
    for (name, value) in &e.headers {
        out.push_str(&format!("  {name}: {value}\n"));
    }
    let (encoding, payload) = payload(&e.payload);
    out.push_str(&format!(
        "payload ({encoding}, {} bytes)\n",
        e.payload.len()
    ));
    let shown = match payload {
        Value::String(text) => text,
        value => serde_json::to_string_pretty(&value).unwrap_or_default(),
    };
    for line in shown.lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// Lays `rows` out in columns under `header`.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// One line of a message list.
pub(crate) fn message_row(m: &StoredMessage) -> Vec<String> {
    let e = &m.envelope;
    let mut error = m.last_error.clone().unwrap_or_default().replace('\n', " ");
    if error.chars().count() > 60 {
        error = error.chars().take(59).collect::<String>() + "…";
    }
    vec![
        e.seq.to_string(),
        e.id.to_string(),
        m.status.to_string(),
        e.event_type.clone(),
        e.partition_key.clone().unwrap_or_else(|| "-".into()),
        e.attempts.to_string(),
        time(e.created_at),
        error,
    ]
}

/// A progress bar of `total` steps on stderr when stdout is a terminal (hidden otherwise).
pub(crate) fn progress(total: u64, what: &str) -> ProgressBar {
    if !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_show_as_json_text_or_hex() {
        assert_eq!(payload(br#"{"a":1}"#), ("json", json!({"a": 1})));
        assert_eq!(payload(b"plain"), ("text", json!("plain")));
        assert_eq!(payload(&[0xff, 0x00]), ("hex", json!("ff00")));
    }

    #[test]
    fn spans_round_to_what_people_read() {
        assert_eq!(span(Duration::from_millis(192_345)), "3m 12s");
        assert_eq!(span(Duration::from_micros(450_123)), "450ms");
        assert_eq!(span(Duration::from_secs(7 * 86_400 + 5)), "7d");
        assert_eq!(span(Duration::from_secs(5_400)), "1h 30m");
    }

    #[test]
    fn tables_align_their_columns() {
        let out = table(&["a", "bb"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(out, "a     bb\nlong  x\n");
    }
}
