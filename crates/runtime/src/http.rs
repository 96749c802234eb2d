//! HTTP-triggered functions: components of the standard `wasi:http/proxy`
//! world, each request in a fresh instance with the same deadline, memory
//! limit and recording as an event invocation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::{Compiled, Limits, Outcome, Pre, Reach, Report, Runtime, Timings, classify, finish, thread_cpu};

/// A response body as the function writes it (streamed while it runs).
pub type ResponseBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;
/// A function's response: status and headers as soon as it sets them; the
/// body as it writes it.
pub type HttpResponse = http::Response<ResponseBody>;

/// What the function answered with: its response, or why there is none.
type Answer = Result<HttpResponse, String>;

/// Why a response body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the response body is over {0} bytes")]
    TooLarge(usize),
    #[error("the response body failed: {0}")]
    Failed(String),
}

/// Reads a function's response body, at most `max` bytes. Read it while
/// the function runs (its writes wait for room), from an async task.
pub async fn read_body(mut body: ResponseBody, max: usize) -> Result<Bytes, BodyError> {
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Failed(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            if buffer.len() + data.len() > max {
                return Err(BodyError::TooLarge(max));
            }
            buffer.extend_from_slice(data);
        }
    }
    Ok(buffer.freeze())
}

impl Runtime {
    /// Runs an HTTP request through a `wasi:http/proxy` function, in a
    /// fresh instance, on this thread (it blocks, as
    /// [`Runtime::invoke_with`] does). `respond` gets
    /// the response as soon as the function sets it — its body streams from
    /// the function as it runs, so read it concurrently — or an error if it
    /// never does; it is called at most once. The report's outcome: a trap,
    /// timeout or memory limit as for events; otherwise `failed` when the
    /// function set no response, set an error, or answered 5xx, and
    /// `succeeded` for any other status.
    pub fn serve(
        &self,
        function: &Compiled,
        name: &str,
        request: http::Request<Bytes>,
        limits: Limits,
        reach: Reach,
        respond: impl FnOnce(Answer) + Send + Sync + 'static,
    ) -> Report {
        let started = Instant::now();
        let cpu_started = thread_cpu();
        let mut store = self.store(name, started, limits, reach);
        let Pre::Http(pre) = &function.pre else {
            let failed = "an event-handler function handles events, not HTTP requests".to_string();
            respond(Err(failed.clone()));
            let timings = Timings::since(started, cpu_started, true, Duration::ZERO);
            return finish(store.data_mut(), Outcome::Failed(failed), None, timings);
        };
        // What the function set, as the report needs it.
        let set: Arc<Mutex<Option<Result<u16, String>>>> = Arc::default();
        let seen = set.clone();
        let callback = move |answer: Result<HttpResponse, wasmtime_wasi_http::p2::bindings::http::types::ErrorCode>| {
            let answer = answer.map_err(|code| format!("{code:?}"));
            *seen.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(answer.as_ref().map(|r| r.status().as_u16()).map_err(Clone::clone));
            respond(answer);
        };
        let (mut parts, body) = request.into_parts();
        if parts.uri.authority().is_none() && !parts.headers.contains_key(http::header::HOST) {
            parts.headers.insert(http::header::HOST, http::HeaderValue::from_static("localhost"));
        }
        let request = http::Request::from_parts(parts, Full::new(body));
        let resources = store.data_mut().http().new_incoming_request(Scheme::Http, request).and_then(|request| {
            let out = store.data_mut().http().new_response_outparam_from_callback(callback)?;
            Ok((request, out))
        });
        let instance = resources.and_then(|resources| Ok((pre.instantiate(&mut store)?, resources)));
        let instantiate = started.elapsed();
        let result = instance.and_then(|(proxy, (request, out))| {
            proxy.wasi_http_incoming_handler().call_handle(&mut store, request, out)
        });
        let timings = Timings::since(started, cpu_started, true, instantiate);
        let state = store.data_mut();
        let set = set.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let status = set.as_ref().and_then(|s| s.as_ref().ok().copied());
        let outcome = match (result, set) {
            (Err(error), _) => classify(&error, state.memory_denied),
            (Ok(()), None) => Outcome::Failed("the function returned without setting a response".into()),
            (Ok(()), Some(Err(code))) => Outcome::Failed(format!("the function responded with an error: {code}")),
            (Ok(()), Some(Ok(status))) if status >= 500 => Outcome::Failed(format!("the function responded {status}")),
            (Ok(()), Some(Ok(_))) => Outcome::Succeeded,
        };
        let (outcome, outputs) = match outcome {
            Outcome::Succeeded => match state.finish(Vec::new()) {
                Ok(outputs) => (outcome, outputs),
                Err(too_large) => (too_large, Vec::new()),
            },
            other => (other, Vec::new()),
        };
        let mut report = finish(state, outcome, status, timings);
        report.outputs = outputs;
        report
    }
}
