//! Device identity rules shared by the registry, the API and the gateway.

/// Longest device id: it is also an MQTT client id and a topic level.
pub const DEVICE_ID_BYTES_MAX: usize = 128;

/// A device id is 1–128 ASCII letters, digits, `-`, `_`, `.` or `:`, so it
/// can serve unchanged as an MQTT client id, a user name and the topic
/// level in `devices/<id>/…`.
pub fn validate_device_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > DEVICE_ID_BYTES_MAX {
        return Err(format!("device id must be 1 to {DEVICE_ID_BYTES_MAX} characters long"));
    }
    match id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))) {
        Some(c) => Err(format!("device id {id:?} contains {c:?}; use letters, digits, - _ . or :")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fit_client_ids_and_topic_levels() {
        for ok in ["thermo-1", "pump_2", "site.a:7", "A"] {
            assert!(validate_device_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a+b", "a#", "a b", "é", &"x".repeat(129)] {
            assert!(validate_device_id(bad).is_err(), "{bad}");
        }
    }
}
