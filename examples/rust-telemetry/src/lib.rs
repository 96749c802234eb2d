//! A Glassbox function in Rust (wit-bindgen, world
//! glassbox:function/event-handler in ../../wit).
//!
//! Device telemetry in ({"temperature": 31.5} on mqtt:devices/+/telemetry),
//! a log line, and when it is too hot: a `telemetry.hot` event and a `fan`
//! command to the device that sent it.

wit_bindgen::generate!({ path: "../../wit", world: "event-handler" });

use exports::glassbox::function::handler::Guest;
use glassbox::function::devices::send_command;
use glassbox::function::events::emit;
use glassbox::function::log::{Level, log};
use glassbox::function::types::{Event, Output};
use serde_json::{Value, json};

const THRESHOLD: f64 = 30.0;

struct Telemetry;

impl Guest for Telemetry {
    /// `Err` fails the invocation (and, after retries, dead-letters the event).
    fn handle(event: Event) -> Result<Vec<Output>, String> {
        let temperature = temperature(&event.data)?;
        let device = event.device.as_deref().unwrap_or("unknown");
        log(Level::Info, &format!("{device}: {temperature} °C (threshold {THRESHOLD} °C)"));
        // Plain stdout works too: the host captures it into the invocation's logs.
        println!("rust-telemetry saw event {}", event.id);
        if temperature <= THRESHOLD {
            return Ok(Vec::new());
        }
        let hot = json!({ "device": device, "temperature": temperature, "threshold": THRESHOLD });
        emit(&Output {
            type_: "telemetry.hot".into(),
            subject: event.subject.clone(),
            datacontenttype: Some("application/json".into()),
            data: hot.to_string().into_bytes(),
        })?;
        if let Some(device) = &event.device {
            // Returns the command's id; an `Err` (refused) fails the invocation.
            let command = send_command(device, "fan", &json!({ "on": true }).to_string(), 300)?;
            log(Level::Warn, &format!("{device} is hot: fan on (command {command})"));
        }
        Ok(Vec::new())
    }
}

/// The reading's `temperature`, or why there is none.
fn temperature(data: &[u8]) -> Result<f64, String> {
    let reading: Value = serde_json::from_slice(data).map_err(|e| format!("telemetry is not JSON: {e}"))?;
    reading["temperature"].as_f64().ok_or_else(|| "telemetry has no numeric \"temperature\"".to_string())
}

export!(Telemetry);
