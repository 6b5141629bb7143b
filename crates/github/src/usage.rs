//! Runner minutes: a month's runs with the minutes their jobs used, and
//! sizing a dispatch from the pending work.
//!
//! The minutes come from the jobs API (issue 16, item 7): each job's start
//! and end, rounded up to the whole minute, as GitHub bills. The run-timing
//! endpoint (`…/runs/{id}/timing`) is not read: GitHub is retiring it, and
//! it already answers zero billable time for some accounts, which made the
//! minutes budget count nothing.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::Serialize;

use crate::Millis;
use crate::client::{GitHub, GitHubError};
use crate::runs::{Job, parse_time};

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month {
    /// The year.
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

/// Text that is not a month (`YYYY-MM`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a month: write YYYY-MM, e.g. 2026-11")]
pub struct MonthError {
    /// The text refused.
    pub text: String,
}

impl Month {
    /// The month `at` falls in.
    pub fn of(at: SystemTime) -> Month {
        let text = humantime::format_rfc3339_seconds(at).to_string();
        text.get(..7)
            .and_then(|ym| ym.parse().ok())
            .unwrap_or(Month {
                year: 1970,
                month: 1,
            })
    }

    /// The month after this one.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Its first instant, in milliseconds since the epoch.
    pub fn start_ms(self) -> Millis {
        parse_time(&format!("{self}-01T00:00:00Z")).unwrap_or(0)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = MonthError;

    fn from_str(s: &str) -> Result<Month, MonthError> {
        let bad = || MonthError { text: s.to_owned() };
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if y.len() != 4 || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

/// Whole minutes, rounded up.
fn ceil_minutes(ms: u64) -> u64 {
    ms.div_ceil(60_000)
}

/// A run's runner minutes from its jobs (each rounded up; a job still
/// running counts until `now`).
pub fn jobs_minutes(jobs: &[Job], now: Millis) -> u64 {
    jobs.iter()
        .filter_map(|j| {
            let start = parse_time(j.started_at.as_deref()?)?;
            let end = j
                .completed_at
                .as_deref()
                .and_then(parse_time)
                .unwrap_or(now);
            Some(ceil_minutes((end - start).max(0) as u64))
        })
        .sum()
}

/// One run's share of a month's usage.
#[derive(Debug, Clone, Serialize)]
pub struct RunUsage {
    /// The run id.
    pub id: u64,
    /// When it was created.
    pub created_at: String,
    /// Its status.
    pub status: Option<String>,
    /// Its conclusion.
    pub conclusion: Option<String>,
    /// Runner minutes: its jobs' (of every attempt), each rounded up.
    pub minutes: u64,
    /// How many jobs those are.
    pub jobs: usize,
    /// The run's page.
    pub html_url: String,
}

/// How many runners `auto` starts: enough for the pending work to fit in
/// their budgets, no more than one per task and no more than the plan's
/// concurrency, at least one.
pub fn auto_runners(
    pending_seconds: u64,
    budget_seconds: u64,
    pending_tasks: u64,
    max: u32,
) -> u32 {
    let by_time = pending_seconds.div_ceil(budget_seconds.max(1));
    by_time.min(pending_tasks).min(u64::from(max)).max(1) as u32
}

/// The runner minutes a dispatch is expected to use: the pending work plus a
/// minute per runner (start-up, install, the final push, and GitHub's
/// rounding up of each job) and one for the workflow's planning job, and
/// never more than every runner using its whole budget.
pub fn estimate_minutes(pending_seconds: u64, runners: u32, budget_seconds: u64) -> u64 {
    let work = pending_seconds.div_ceil(60) + u64::from(runners);
    let cap = u64::from(runners) * budget_seconds.div_ceil(60).max(1);
    work.min(cap) + 1
}

impl GitHub {
    /// The runs of `workflow` created in `month`, with each one's runner
    /// minutes from its jobs (a job still running counts until `now`).
    pub fn month_usage(
        &self,
        workflow: &str,
        month: Month,
        now: Millis,
    ) -> Result<Vec<RunUsage>, GitHubError> {
        let (from, to) = (month.start_ms(), month.next().start_ms());
        let mut runs = Vec::new();
        // Newest first: read pages until a run older than the month shows.
        // (The `created` filter is not used: its search syntax, `>=DATE`, is
        // not the date-time GitHub's description declares for it.)
        'pages: for page in 1..=50 {
            let got = self.list_runs(workflow, None, 100, page)?;
            let n = got.workflow_runs.len();
            for run in got.workflow_runs {
                let Some(created) = parse_time(&run.created_at) else {
                    continue;
                };
                if created < from {
                    break 'pages;
                }
                if created < to {
                    runs.push(run);
                }
            }
            if n < 100 {
                break;
            }
        }
        let mut out = Vec::with_capacity(runs.len());
        for run in runs {
            let jobs = self.jobs_of_every_attempt(run.id)?;
            out.push(RunUsage {
                id: run.id,
                created_at: run.created_at,
                status: run.status,
                conclusion: run.conclusion,
                minutes: jobs_minutes(&jobs, now),
                jobs: jobs.len(),
                html_url: run.html_url,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn auto_sizing() {
        // 10 tasks of 10 min in 45-min runners: 100 min of work -> 3 runners.
        assert_eq!(auto_runners(6000, 2700, 10, 20), 3);
        // Never more runners than tasks.
        assert_eq!(auto_runners(4 * 3600, 2700, 4, 20), 4);
        // Never more than the plan allows.
        assert_eq!(auto_runners(1000 * 3600, 2700, 1000, 20), 20);
        // Work that fits one runner, and no work at all: one runner.
        assert_eq!(auto_runners(60, 2700, 1, 20), 1);
        assert_eq!(auto_runners(0, 2700, 0, 20), 1);
        // A zero budget does not divide by zero.
        assert_eq!(auto_runners(100, 0, 5, 3), 3);
    }

    #[test]
    fn minutes_estimate() {
        // 100 min of work on 3 runners: 100 + 3 (runners) + 1 (planning).
        assert_eq!(estimate_minutes(6000, 3, 2700), 104);
        // Capped by every runner using its whole budget.
        assert_eq!(estimate_minutes(100 * 3600, 2, 2700), 91);
        assert_eq!(estimate_minutes(0, 1, 2700), 2);
    }

    #[test]
    fn months() {
        let m: Month = "2026-12".parse().unwrap();
        assert_eq!(m.next().to_string(), "2027-01");
        assert_eq!(m.start_ms(), parse_time("2026-12-01T00:00:00Z").unwrap());
        let t = UNIX_EPOCH + Duration::from_millis(m.start_ms() as u64 + 86_400_000);
        assert_eq!(Month::of(t), m);
        assert!("2026-13".parse::<Month>().is_err());
        assert!("26-01".parse::<Month>().is_err());
    }

    #[test]
    fn a_refused_month_says_how_to_write_one() {
        let e = "November".parse::<Month>().unwrap_err();
        assert_eq!(e.text, "November");
        assert_eq!(
            e.to_string(),
            "`November` is not a month: write YYYY-MM, e.g. 2026-11"
        );
        assert!("2026-0x".parse::<Month>().is_err());
    }

    #[test]
    fn minutes_from_jobs() {
        let jobs: Vec<Job> = serde_json::from_str(
            r#"[{"id":1,"started_at":"2026-11-22T10:00:00Z","completed_at":"2026-11-22T10:02:01Z"},
                {"id":2,"started_at":"2026-11-22T10:00:00Z","completed_at":null},
                {"id":3,"started_at":null},
                {"id":4,"started_at":"2026-11-22T10:00:00Z","completed_at":"2026-11-22T10:01:00Z"},
                {"id":5,"started_at":"2026-11-22T10:00:00Z","completed_at":"2026-11-22T10:00:00Z"}]"#,
        )
        .unwrap();
        let now = parse_time("2026-11-22T10:00:30Z").unwrap();
        // 2m01s -> 3; running 30 s -> 1; never started -> 0; exactly a
        // minute -> 1; a job that took no time bills nothing.
        assert_eq!(jobs_minutes(&jobs, now), 3 + 1 + 1);
    }
}
