//! {{name}}: a Glassbox function (world glassbox:function/event-handler in
//! ./wit). Logs each JSON message it gets and returns a `{{name}}.seen`
//! event about it; see docs/functions.md for the host interfaces (log,
//! events, kv, devices).

wit_bindgen::generate!({ path: "wit", world: "event-handler" });

use exports::glassbox::function::handler::Guest;
use glassbox::function::log::{Level, log};
use glassbox::function::types::{Event, Output};
use serde_json::{Value, json};

struct Function;

impl Guest for Function {
    /// `Ok(outputs)` succeeds (each output is recorded as an event caused by
    /// this one); `Err(reason)` fails the invocation and, after retries,
    /// dead-letters the event.
    fn handle(event: Event) -> Result<Vec<Output>, String> {
        let message: Value = serde_json::from_slice(&event.data).map_err(|e| format!("not JSON: {e}"))?;
        let device = event.device.as_deref().unwrap_or("unknown");
        log(Level::Info, &format!("{device} sent {message}"));
        let seen = json!({ "device": device, "bytes": event.data.len() });
        Ok(vec![Output {
            type_: "{{name}}.seen".into(),
            subject: event.subject,
            datacontenttype: Some("application/json".into()),
            data: seen.to_string().into_bytes(),
        }])
    }
}

export!(Function);
