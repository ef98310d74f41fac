//! A write's HTTP request, built as kube-rs' `Api` methods build it (`kube::core::Request`'s
//! builders, the verb named for kube's tracing), so that a controller's driver builds it in
//! its loop and spawns only the sending — a task of about a kilobyte instead of the whole
//! request and a future for each kind of write (the scheduler's, the volume controller's and
//! the fake nodes' drivers).

use kube::core::request::Error;

/// The request with its verb named for kube's tracing, as `Api`'s methods do; a builder's
/// error as text (the drivers report it as the write's failure).
pub fn with_verb(
    request: Result<http::Request<Vec<u8>>, Error>,
    verb: &'static str,
) -> Result<http::Request<Vec<u8>>, String> {
    let mut req = request.map_err(|e| e.to_string())?;
    req.extensions_mut().insert(verb);
    Ok(req)
}

/// A request body: `value` as JSON.
pub fn json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| e.to_string())
}

/// kube's request builder for `K`'s collection: in `namespace`, or cluster-wide (`None`).
pub fn collection<K: kube::Resource<DynamicType = ()>>(
    namespace: Option<&str>,
) -> kube::core::Request {
    kube::core::Request::new(K::url_path(&(), namespace))
}
