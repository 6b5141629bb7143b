//! Issue 17, item 8: the conventions of a command-line tool: completions,
//! man pages, NO_COLOR, quiet INFO by default, the form of `--shard`.

use std::fs;
use std::process::{Command, Stdio};

use crate::harness::{Device, dir_remote, temp_dir};

#[test]
fn completions_are_scripts_each_shell_reads() {
    let d = Device::new("completions");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = d.ok(&["completions", shell]);
        for word in ["submit", "dispatch", "run-tasks-from"] {
            assert!(
                run.stdout.contains(word),
                "the {shell} script lacks {word}:\n{}",
                run.stdout
            );
        }
    }
    // bash parses its script (`bash -n`: read, do not run).
    let script = d.ok(&["completions", "bash"]).stdout;
    let path = d.scratch("bridge.bash");
    fs::write(&path, &script).expect("the script");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash runs");
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // And, sourced, it registers a completion for `bridge`.
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!("source '{}' && complete -p bridge", path.display()))
        .output()
        .expect("bash runs");
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("bridge"),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    let bad = d.run(&["completions", "tcsh"]).expect_code(2);
    assert!(bad.stderr.contains("bash"), "{}", bad.stderr);
}

#[test]
fn man_writes_a_page_for_every_command() {
    let d = Device::new("man");
    let top = d.ok(&["man"]).stdout;
    assert!(
        top.starts_with(".ie") || top.contains(".TH bridge"),
        "{top}"
    );
    let dir = d.scratch("man1");
    d.ok(&["man", "--dir", dir.to_str().expect("utf-8")]);
    // Every command `bridge --help` lists has its page, nested ones too.
    let help = d.ok(&["--help"]).stdout;
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .expect("a list of commands")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 20, "{commands:?}");
    for page in std::iter::once("bridge".to_owned())
        .chain(commands.iter().map(|c| format!("bridge-{c}")))
        .chain(["bridge-members-add".to_owned()])
    {
        let text = fs::read_to_string(dir.join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("no page {page}.1: {e}"));
        assert!(text.contains(".TH"), "{page}.1 is not a man page:\n{text}");
    }
    let work = fs::read_to_string(dir.join("bridge-work.1")).expect("bridge-work.1");
    assert!(
        work.contains("\\-\\-parallel") && work.contains("Exit codes"),
        "{work}"
    );
}

/// Runs `bridge ARGS` of `d` with its stdout and stderr on a terminal (a
/// pseudo-terminal made by util-linux's `script`), with `env` on top;
/// returns everything the terminal got.
fn on_a_terminal(d: &Device, env: &[(&str, &str)], args: &[&str]) -> String {
    let cmd = d.command_in(&d.dir, true, args);
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
        .collect();
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &line.join(" "), "/dev/null"])
        .env_clear()
        .current_dir(&d.dir)
        .stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            script.env(k, v);
        }
    }
    script.envs(env.iter().copied());
    let out = script.output().expect("script (util-linux) runs");
    assert!(
        out.status.success(),
        "`bridge {}` on a terminal failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_color_means_no_escape_sequence_on_a_terminal() {
    // An INFO line (-v) of the store crate: its level is coloured on a
    // terminal unless NO_COLOR is set.
    let store = temp_dir("nocolor-store");
    for sub in ["a", "b"] {
        fs::create_dir_all(store.path().join(sub)).expect("a store folder");
    }
    let d = Device::new("colour");
    let coloured = on_a_terminal(
        &d,
        &[],
        &[
            "-v",
            "init",
            "--remote",
            &dir_remote(&store.path().join("a")),
        ],
    );
    assert!(coloured.contains("initialised the remote"), "{coloured}");
    assert!(
        coloured.contains('\u{1b}'),
        "the terminal gets colour by default:\n{coloured}"
    );
    let d = Device::new("no-colour");
    let plain = on_a_terminal(
        &d,
        &[("NO_COLOR", "1")],
        &[
            "-v",
            "init",
            "--remote",
            &dir_remote(&store.path().join("b")),
        ],
    );
    assert!(plain.contains("initialised the remote"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "NO_COLOR=1 still wrote an escape sequence:\n{plain:?}"
    );
    // clap's help and usage errors follow the same convention.
    let help = on_a_terminal(&d, &[("NO_COLOR", "1")], &["--help"]);
    assert!(
        help.contains("Usage") && !help.contains('\u{1b}'),
        "{help:?}"
    );
}

#[test]
fn info_lines_show_with_verbose_only() {
    let store = temp_dir("info-store");
    for sub in ["a", "b"] {
        fs::create_dir_all(store.path().join(sub)).expect("a store folder");
    }
    let quiet = Device::new("info-default");
    let run = quiet.ok(&["init", "--remote", &dir_remote(&store.path().join("a"))]);
    assert!(
        !run.stderr.contains("INFO"),
        "INFO by default (the old `bridge=info` matched bridge_store):\n{}",
        run.stderr
    );
    let verbose = Device::new("info-verbose");
    let run = verbose.ok(&[
        "-v",
        "init",
        "--remote",
        &dir_remote(&store.path().join("b")),
    ]);
    assert!(
        run.stderr.contains("INFO") && run.stderr.contains("initialised the remote"),
        "{}",
        run.stderr
    );
}

#[test]
fn shards_count_from_zero_and_a_one_based_last_shard_is_explained() {
    // Shards are read before the workspace is opened: a folder without one
    // tells a good --shard (the workspace is what is missing) from a bad
    // one.
    let d = Device::new("shards");
    let run = |shard: &str| d.run(&["run", "--budget", "5m", "--shard", shard]);
    for good in ["0/4", "3/4", "0/1"] {
        let r = run(good).expect_code(1);
        assert!(
            !r.stderr.contains("--shard") && r.stderr.contains("bridge.toml"),
            "{good}: {}",
            r.stderr
        );
    }
    let r = run("4/4").expect_code(1);
    assert!(
        r.stderr
            .contains("--shard 4/4: shard indices start at 0, so 4 runners are 0/4 to 3/4")
            && r.stderr.contains("write --shard 3/4"),
        "{}",
        r.stderr
    );
    let r = run("7/4").expect_code(1);
    assert!(r.stderr.contains("write an index below 4"), "{}", r.stderr);
    for bad in ["1/0", "a/4", "4"] {
        let r = run(bad).expect_code(1);
        assert!(
            r.stderr.contains("is not INDEX/COUNT") && r.stderr.contains("0/4, 1/4, 2/4 and 3/4"),
            "{bad}: {}",
            r.stderr
        );
    }
}
