//! Small request/response helpers shared by the handlers: query parameters, body decoding
//! (JSON/YAML, size limit), Status responses, RFC 3339 time.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::status::ApiError;

/// kube-apiserver's `MaxRequestBodyBytes`: 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The query string as an ordered multimap (`command=` repeats for exec).
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        Query(
            raw.map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Boolean parameters as kube-apiserver parses them (`true`, `1`; `watch=1` is common).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1" | "True" | "TRUE"))
    }

    /// An integer parameter; a malformed value is a 400 as upstream.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {name}: {v:?} is not an integer"))
            }),
        }
    }

    /// `dryRun=All` (any other value is a 400, as upstream).
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        let mut dry = false;
        for v in self.get_all("dryRun") {
            match v {
                "All" => dry = true,
                "" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid dry run value: {other}: supported values: All"
                    )))
                }
            }
        }
        Ok(dry)
    }
}

/// The body's media type without parameters, lowercased (`application/json` when absent).
pub fn content_type(headers: &HeaderMap) -> Cow<'_, str> {
    let Some(v) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Cow::Borrowed("application/json");
    };
    let media = v.split(';').next().unwrap_or("").trim();
    if media.is_empty() {
        Cow::Borrowed("application/json")
    } else if media.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(media.to_ascii_lowercase())
    } else {
        Cow::Borrowed(media)
    }
}

/// `Request entity too large: limit is 3145728`, as kube-apiserver's body reader says.
pub fn too_large() -> ApiError {
    ApiError::new(
        413,
        "RequestEntityTooLarge",
        format!("Request entity too large: limit is {MAX_BODY_BYTES}"),
    )
}

/// kube-apiserver's `summarizeData`: the first 30 bytes of a body for decode errors.
fn summarize(body: &[u8]) -> String {
    const MAX: usize = 30;
    if body.is_empty() {
        return "<empty>".to_string();
    }
    let cut = &body[..body.len().min(MAX)];
    let more = if body.len() > MAX { " ..." } else { "" };
    if body[0] == b'{' {
        format!("{}{more}", String::from_utf8_lossy(cut))
    } else {
        let hex: String = cut.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}{more}")
    }
}

/// Decodes a create/update body (JSON, or YAML with `application/yaml`) into an object.
/// `expected_kind` is the kind the path serves, for the decode error message.
pub fn decode_object(ct: &str, body: &[u8], expected_kind: &str) -> Result<Value, ApiError> {
    let unrecognized = |err: String| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {expected_kind}): {err} ({})",
            summarize(body)
        ))
    };
    let v: Value = match ct {
        "application/json" | "*/*" | "text/plain" => crate::semantics::json::parse(body)
            .map_err(|e| unrecognized(format!("couldn't get version/kind; json parse error: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            // One document only, like kube-apiserver's YAML serializer.
            serde_norway::from_slice(body).map_err(|e| {
                unrecognized(format!("couldn't get version/kind; yaml parse error: {e}"))
            })?
        }
        "application/vnd.kubernetes.protobuf" => super::protobuf::decode(body)
            .map_err(|why| ApiError::new(415, "UnsupportedMediaType", why))?,
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other})"),
            ))
        }
    };
    if !v.is_object() {
        return Err(unrecognized(
            "couldn't get version/kind; json parse error: json: cannot unmarshal into Go value of type struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }".to_string(),
        ));
    }
    Ok(v)
}

/// `v` as compact JSON, byte for byte what `serde_json::to_vec` writes, by the store's
/// serializer (a third of serde_json's instructions on objects: every response is one).
pub fn to_json(v: &Value) -> String {
    let mut out = String::with_capacity(1024);
    crate::store::core::push_json(&mut out, v);
    out
}

/// A JSON response with `Content-Type: application/json`.
pub fn json_response(code: StatusCode, v: &Value) -> Response {
    json_text_response(code, to_json(v))
}

/// A response whose body is JSON text already (a stored object, an encoded value).
pub fn json_text_response(code: StatusCode, text: impl Into<Body>) -> Response {
    let mut resp = Response::new(text.into());
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An `ApiError` as the `Status` body kube-apiserver sends.
pub fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_status())
}

/// Adds one `Warning: 299 - "..."` header per semantics warning (kubectl prints `Warning: ...`).
pub fn add_warnings(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        let text = w.replace('"', "\\\"").replace(['\n', '\r'], " ");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            resp.headers_mut().append("warning", v);
        }
    }
}

/// RFC 3339 UTC with seconds: `2026-01-01T00:00:00Z` (metav1.Time).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        );
    }
    // Every write formats its time: digits pushed directly, not through `format!`.
    fn push(out: &mut String, v: u32, width: u32) {
        for p in (0..width).rev() {
            out.push(char::from(b'0' + (v / 10u32.pow(p) % 10) as u8));
        }
    }
    let mut out = String::with_capacity(20);
    push(&mut out, y as u32, 4);
    out.push('-');
    push(&mut out, m, 2);
    out.push('-');
    push(&mut out, d, 2);
    out.push('T');
    push(&mut out, (rem / 3600) as u32, 2);
    out.push(':');
    push(&mut out, ((rem % 3600) / 60) as u32, 2);
    out.push(':');
    push(&mut out, (rem % 60) as u32, 2);
    out.push('Z');
    out
}

/// Parses RFC 3339 (`Z` or `±hh:mm`, optional fraction) into a time; `None` if malformed.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut nanos: u32 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        rest = &frac[digits.len()..];
        let mut n = digits.clone();
        n.truncate(9);
        while n.len() < 9 {
            n.push('0');
        }
        nanos = n.parse().ok()?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    if secs < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::new(secs as u64, nanos))
}

// Howard Hinnant's civil-date algorithms.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The user agent's product (`kubectl/v1.33.1 (linux/amd64) ...` → `kubectl`), which
/// kube-apiserver also uses as the default field manager.
pub fn ua_product(ua: &str) -> String {
    let p = ua.split('/').next().unwrap_or("").trim();
    if p.is_empty() {
        "unknown".to_string()
    } else {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
        assert_eq!(rfc3339(t), "2026-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00Z"), Some(t));
        assert_eq!(parse_rfc3339("2026-01-01T01:00:00+01:00"), Some(t));
        assert_eq!(
            parse_rfc3339("2026-01-01T00:00:00.5Z"),
            Some(t + Duration::from_millis(500))
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn rfc3339_digits_are_those_of_format() {
        for secs in (0..4_000_000_000u64)
            .step_by(86_399_917)
            .chain([0, 59, 951_782_400])
        {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let days = (secs / 86_400) as i64;
            let rem = (secs % 86_400) as i64;
            let (y, m, d) = civil_from_days(days);
            let expect = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
                rem / 3600,
                (rem % 3600) / 60,
                rem % 60
            );
            assert_eq!(rfc3339(t), expect);
        }
    }

    #[test]
    fn query_multimap() {
        let q = Query::parse(Some("command=ls&command=%2F&watch=1&limit=5"));
        assert_eq!(q.get_all("command").collect::<Vec<_>>(), vec!["ls", "/"]);
        assert!(q.flag("watch"));
        assert_eq!(q.int("limit").unwrap(), Some(5));
        assert!(Query::parse(Some("limit=x")).int("limit").is_err());
    }
}
