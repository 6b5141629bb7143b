//! Progress bars for URL inputs: the binary's [`Progress`] for
//! [`bridge_fetch::Fetcher`], which draws nothing itself. A bar per
//! download on stderr when stderr is a terminal outside GitHub Actions
//! (where a bar would fill the log); else nothing, and each finished
//! download is one log line of the fetcher's.

use std::sync::Arc;

use bridge_fetch::{Download, Progress};

/// The progress to report downloads to: bars on a terminal, else none.
pub fn progress() -> Option<Arc<dyn Progress>> {
    let bars = crate::output::surroundings().live_stderr;
    bars.then(|| Arc::new(Bars) as Arc<dyn Progress>)
}

/// Draws one indicatif bar per download.
struct Bars;

impl Progress for Bars {
    fn start(&self, url: &str, len: Option<u64>) -> Box<dyn Download> {
        let (bar, template) = match len {
            Some(n) => (
                indicatif::ProgressBar::new(n),
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            ),
            None => (
                indicatif::ProgressBar::new_spinner(),
                "{msg} {spinner} {bytes} {bytes_per_sec}",
            ),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        // The URL comes from a task: made safe for the terminal.
        bar.set_message(crate::output::safe(&short_url(url)).into_owned());
        Box::new(Bar(bar))
    }
}

/// One download's bar; dropped unfinished when the download failed (as
/// indicatif leaves it).
struct Bar(indicatif::ProgressBar);

impl Download for Bar {
    fn advance(&self, received: u64) {
        self.0.set_position(received);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// The URL's last path segment, for a progress bar.
fn short_url(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or(path)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_show_the_last_path_segment() {
        assert_eq!(short_url("https://h/data/in.csv?token=x#f"), "in.csv");
        assert_eq!(short_url("https://h/data/"), "data");
        assert_eq!(short_url("in.csv"), "in.csv");
    }
}
