//! A long-lived worker (`bridge work --follow`) compacts and reloads its
//! documents now and then, so its memory stays flat; it must go on
//! working across those reloads, and the store must keep every result.

use crate::harness::{Device, poll};

#[test]
fn a_following_worker_reloads_and_keeps_working() {
    const ROUNDS: usize = 3;
    const PER_ROUND: usize = 40;
    let mut d = Device::new("follow-reload");
    d.ok(&["init"]);
    // Reload at every idle moment; log it.
    let toml = d.path("bridge.toml");
    let text = std::fs::read_to_string(&toml).expect("read bridge.toml");
    let text = text.replacen("[worker]\n", "[worker]\nreload-every = \"1ms\"\n", 1);
    std::fs::write(&toml, text).expect("write bridge.toml");
    d.set_env("BRIDGE_LOG", "bridge=debug");

    let worker = d.spawn(
        "follow",
        &["work", "--follow", "--poll", "200ms", "--parallel", "2"],
    );
    for round in 0..ROUNDS {
        let values: Vec<String> = (0..PER_ROUND).map(|n| n.to_string()).collect();
        d.write(
            "round.yaml",
            &format!(
                "tasks:\n  - name: r{round}\n    matrix: {{ n: [{}] }}\n    run: echo {round}-${{{{ matrix.n }}}}\n",
                values.join(", ")
            ),
        );
        d.ok(&["submit", "--offline", "round.yaml"]);
        let want = (round + 1) * PER_ROUND;
        poll(&format!("round {round} to be done"), || {
            d.status().count("done") == want as u64
        });
    }
    // Let it go idle once more (a reload after the last round), then stop.
    let err = d.scratch("follow.stderr");
    poll("the worker to reload after the last round", || {
        std::fs::read_to_string(&err)
            .unwrap_or_default()
            .matches("reloading the documents")
            .count()
            > ROUNDS
    });
    worker.terminate();
    let run = worker.wait();
    assert!(
        run.stderr.contains("reloading the documents"),
        "it never reloaded:\n{}",
        run.stderr
    );

    // Every result is there, once, with its output, read from a fresh load
    // (no cache) of what the worker left: compacted documents included.
    std::fs::remove_dir_all(d.path(".bridge/cache")).ok();
    let tasks = d.ls();
    assert_eq!(tasks.len(), ROUNDS * PER_ROUND);
    assert!(tasks.iter().all(|t| t.status == "done"), "{tasks:#?}");
    for t in tasks.iter().filter(|t| t.name.ends_with("[n=7]")) {
        let logs = d.ok(&["logs", &t.id]);
        let round = t
            .name
            .trim_start_matches('r')
            .split('[')
            .next()
            .unwrap_or("");
        assert!(
            logs.stdout.contains(&format!("{round}-7")),
            "{}",
            logs.stdout
        );
    }
}
