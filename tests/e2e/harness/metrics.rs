//! pgsink's HTTP endpoints (`/metrics`, health) read with a bare HTTP/1.0 GET, and the samples of
//! a Prometheus text exposition.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// GET `path` from `127.0.0.1:port` with a plain HTTP/1.0 request; the body, or None when
/// the server does not answer (yet) or answers with another status than 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    if !status.contains(" 200") {
        eprintln!("GET {path}: {status}");
        return None;
    }
    Some(body.to_string())
}

/// The samples of metric `name` (exact name, not `_bucket` etc.) whose labels contain every
/// `label="value"` of `labels`: (label text, value).
pub fn samples(body: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in body.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(after) = rest.strip_prefix('{') {
            let Some((l, v)) = after.split_once('}') else {
                continue;
            };
            (l.to_string(), v.trim())
        } else if rest.starts_with(' ') {
            (String::new(), rest.trim())
        } else {
            continue; // another metric with this prefix
        };
        if !labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        let value = value.split_whitespace().next().unwrap_or("");
        if let Ok(v) = value.parse::<f64>() {
            out.push((label_text, v));
        }
    }
    out
}
