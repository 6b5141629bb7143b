//! Text from other members made safe to show, and times written for people.
//! Both are used in error messages, which the engine composes.

use bridge_model::Millis;

/// Text from a task document made safe for a terminal: control characters
/// (escape sequences, carriage returns, bells) are shown as `\u{..}` escapes,
/// so a task's name cannot disguise what the screen shows.
pub fn safe(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// An RFC 3339 UTC timestamp.
pub fn timestamp(at: Millis) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
