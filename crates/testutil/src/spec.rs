//! Task specs for tests, built from JSON so that fields added to
//! [`TaskSpec`] later take their defaults and no test needs updating.

use bridge_model::TaskSpec;
use serde_json::{Value, json};

/// A spec from JSON (fields left out take their defaults); panics if it
/// is not one.
pub fn from_json(v: Value) -> TaskSpec {
    serde_json::from_value(v).expect("a task spec")
}

/// A task named `name` running `script` with `sh`, with a 60 s timeout.
pub fn shell_task(name: &str, script: &str) -> TaskSpec {
    from_json(json!({
        "name": name,
        "command": {"shell": {"shell": "sh", "script": script}},
        "timeout_s": 60,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_task_is_a_valid_spec() {
        let spec = shell_task("t", "echo hi");
        assert_eq!(spec.name, "t");
        let round: TaskSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(round, spec);
    }
}
