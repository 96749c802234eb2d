//! The `topic` label: a message's topic written as the first operator-defined
//! template (`metrics.topics`) it matches, else [`OTHER`]. Never the raw
//! topic: a client chooses its topics, so they would let one device create
//! series without limit. Unmatched topics share one `other` series rather
//! than hash buckets: a bucket says nothing an operator can act on, and
//! one device could still spread its traffic over all of them.

use glassbox_core::topic;

/// The label of a topic no template matches (and of a folded series).
pub const OTHER: &str = "other";
/// Most templates `metrics.topics` may hold: each is tried on every message.
pub const TEMPLATES_MAX: usize = 64;
/// Longest template, in bytes (it becomes a label value).
pub const TEMPLATE_BYTES_MAX: usize = 128;

/// The templates, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct TopicTemplates(Vec<String>);

/// The default `metrics.topics`: the device topics the docs use, then any
/// other topic under a device's own prefix.
pub fn default_templates() -> Vec<String> {
    ["devices/+/telemetry", "devices/+/status", "devices/+/#"].map(String::from).to_vec()
}

impl TopicTemplates {
    /// The templates, or every problem with them (for config validation).
    pub fn new(templates: &[String]) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        if templates.len() > TEMPLATES_MAX {
            problems.push(format!(
                "metrics.topics has {} templates; at most {TEMPLATES_MAX}: use + and # to cover more topics with one",
                templates.len()
            ));
        }
        for template in templates {
            let shared = template.starts_with("$share/");
            if shared || template.len() > TEMPLATE_BYTES_MAX || topic::parse_filter(template).is_err() {
                problems.push(format!(
                    "metrics.topics {template:?} must be a topic filter (e.g. devices/+/telemetry), not shared, \
                     of at most {TEMPLATE_BYTES_MAX} bytes"
                ));
            }
        }
        match problems.is_empty() {
            true => Ok(Self(templates.to_vec())),
            false => Err(problems),
        }
    }

    /// The `topic` label of a message published on `name`.
    pub fn label(&self, name: &str) -> &str {
        self.0.iter().find(|t| topic::matches(t, name)).map_or(OTHER, String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_labelled_by_the_first_template_it_matches_else_other() {
        let templates = TopicTemplates::new(&default_templates()).unwrap();
        assert_eq!(templates.label("devices/t-1/telemetry"), "devices/+/telemetry");
        assert_eq!(templates.label("devices/t-1/shadow/update"), "devices/+/#");
        assert_eq!(templates.label(&format!("{}/x", "a".repeat(30_000))), OTHER);
        assert_eq!(templates.label("devices"), OTHER);
        assert_eq!(TopicTemplates::default().label("devices/t-1/telemetry"), OTHER);
    }

    #[test]
    fn templates_are_bounded_in_number_and_length_and_must_be_filters() {
        let many: Vec<String> = (0..=TEMPLATES_MAX).map(|i| format!("t/{i}")).collect();
        assert!(TopicTemplates::new(&many).unwrap_err()[0].contains("at most 64"));
        let bad = ["a/#/b".to_string(), "$share/g/a".into(), "x".repeat(TEMPLATE_BYTES_MAX + 1)];
        assert_eq!(TopicTemplates::new(&bad).unwrap_err().len(), 3);
    }
}
