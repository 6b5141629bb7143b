//! Argument lines for `bridge submit --args FILE|-`, as GNU parallel's
//! `:::: FILE`: reading the lines, splitting them into columns, and the
//! replacement strings (`{}`, `{1}`, `{#}`, …) substituted into a command's
//! words. Pure functions over text, so that the rules are unit-tested
//! without a workspace.

use regex_automata::meta::Regex;

/// How a line is split into columns: on tabs (the default), or on a
/// regular expression (`--colsep`, a regex as in GNU parallel).
pub enum Colsep {
    Tab,
    Regex(Regex),
}

impl Colsep {
    /// `--colsep`'s value, checked: a regex that can match the empty text
    /// (`|`, `a*`) would split between every character.
    pub fn parse(pattern: Option<&str>) -> Result<Colsep, String> {
        let Some(p) = pattern else {
            return Ok(Colsep::Tab);
        };
        let re =
            Regex::new(p).map_err(|e| format!("--colsep {p} is not a regular expression: {e}"))?;
        if re.is_match("") {
            return Err(format!(
                "--colsep {p} matches the empty text, so it would split between every character \
                 (it is a regular expression: write `\\|` for a literal |, `\\.` for a literal .)"
            ));
        }
        Ok(Colsep::Regex(re))
    }

    /// The columns of one line.
    pub fn split<'a>(&self, line: &'a str) -> Vec<&'a str> {
        match self {
            Colsep::Tab => line.split('\t').collect(),
            Colsep::Regex(re) => re.split(line).map(|span| &line[span]).collect(),
        }
    }
}

/// One non-empty argument line: its number in the file (1-based, counting
/// empty lines, so that errors point at the right line), its sequence
/// number among the tasks (`{#}`), the line and its columns.
pub struct ArgLine<'a> {
    pub number: usize,
    pub seq: usize,
    pub line: &'a str,
    pub columns: Vec<&'a str>,
}

/// The non-empty lines of `text`, split. A trailing `\r` (a file saved on
/// Windows) is not part of the line.
pub fn lines<'a>(text: &'a str, colsep: &Colsep) -> Vec<ArgLine<'a>> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.is_empty())
        .enumerate()
        .map(|(seq, (number, line))| ArgLine {
            number,
            seq: seq + 1,
            line,
            columns: colsep.split(line),
        })
        .collect()
}

/// Whether `word` holds a replacement string (so the line is not appended).
pub fn has_placeholder(word: &str) -> bool {
    let mut rest = word;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        if let Some(end) = after.find('}')
            && is_token(&after[..end])
        {
            return true;
        }
        rest = after;
    }
    false
}

fn is_token(t: &str) -> bool {
    matches!(t, "" | "#" | "." | "/" | "//" | "/.")
        || (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
}

/// `word` with every replacement string replaced, in one pass (a line that
/// itself holds `{1}` is not substituted again): `{}` the line, `{N}` its
/// N-th column, `{#}` the task's sequence number, and `{.}`, `{/}`, `{//}`,
/// `{/.}` the line as a path (as with `--each`). Any other `{…}` is kept
/// as written. A column the line lacks is an error naming the line.
pub fn substitute(word: &str, arg: &ArgLine<'_>, source: &str) -> Result<String, String> {
    let mut out = String::with_capacity(word.len() + arg.line.len());
    let mut rest = word;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let token = after
            .find('}')
            .map(|end| &after[..end])
            .filter(|t| is_token(t));
        let Some(token) = token else {
            out.push('{');
            rest = after;
            continue;
        };
        match token {
            "" => out.push_str(arg.line),
            "#" => out.push_str(&arg.seq.to_string()),
            "." | "/" | "//" | "/." => {
                out.push_str(&super::submit::placeholders(
                    &format!("{{{token}}}"),
                    arg.line,
                ));
            }
            digits => {
                let n: usize = digits.parse().unwrap_or(0);
                let column = n.checked_sub(1).and_then(|i| arg.columns.get(i));
                match column {
                    Some(c) => out.push_str(c),
                    None if n == 0 => {
                        return Err(format!(
                            "`{{0}}` in `{word}`: columns count from 1 ({{1}} is the first; {{}} is the whole line)"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "line {} of {source} has {} column{}, but `{word}` uses {{{n}}}",
                            arg.number,
                            arg.columns.len(),
                            if arg.columns.len() == 1 { "" } else { "s" }
                        ));
                    }
                }
            }
        }
        rest = &after[token.len() + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str, colsep: &Colsep) -> ArgLine<'static> {
        let line: &'static str = Box::leak(line.to_owned().into_boxed_str());
        ArgLine {
            number: 3,
            seq: 2,
            line,
            columns: colsep.split(line),
        }
    }

    #[test]
    fn columns_split_on_tabs_by_default_and_on_a_regex() -> Result<(), String> {
        assert_eq!(Colsep::Tab.split("a\tb c\t\td"), ["a", "b c", "", "d"]);
        assert_eq!(
            Colsep::parse(Some(","))?.split("x,y,,z"),
            ["x", "y", "", "z"]
        );
        assert_eq!(Colsep::parse(Some(" +"))?.split("x  y z"), ["x", "y", "z"]);
        assert_eq!(Colsep::parse(Some("\\|"))?.split("p|q"), ["p", "q"]);
        assert_eq!(Colsep::Tab.split("alone"), ["alone"]);
        Ok(())
    }

    #[test]
    fn a_colsep_matching_nothing_or_broken_is_refused() {
        for bad in ["|", "a*", "", "("] {
            assert!(Colsep::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_skip_empty_ones_but_keep_their_numbers() {
        let text = "a\tb\n\nc\r\n\n";
        let got: Vec<(usize, usize, &str)> = lines(text, &Colsep::Tab)
            .iter()
            .map(|l| (l.number, l.seq, l.line))
            .collect();
        assert_eq!(got, [(1, 1, "a\tb"), (3, 2, "c")]);
    }

    #[test]
    fn placeholders_are_replaced_in_place_in_one_pass() -> Result<(), String> {
        let l = one("dir/x.csv\t{1}\tz", &Colsep::Tab);
        let s = |w: &str| substitute(w, &l, "args.txt");
        assert_eq!(s("{}")?, "dir/x.csv\t{1}\tz");
        assert_eq!(s("{1}")?, "dir/x.csv");
        // The line's own `{1}` is not substituted again.
        assert_eq!(s("--in={2}")?, "--in={1}");
        assert_eq!(s("{3}-{1}.out")?, "z-dir/x.csv.out");
        assert_eq!(s("job{#}")?, "job2");
        assert_eq!(s("{x} {} {")?, "{x} dir/x.csv\t{1}\tz {");
        let path = one("dir/x.csv", &Colsep::Tab);
        let p = |w: &str| substitute(w, &path, "args.txt");
        assert_eq!(p("{.}")?, "dir/x");
        assert_eq!(p("{/}")?, "x.csv");
        assert_eq!(p("{//}")?, "dir");
        assert_eq!(p("{/.}")?, "x");
        Ok(())
    }

    #[test]
    fn a_missing_column_names_the_line() {
        let l = one("a\tb", &Colsep::Tab);
        let err = substitute("{3}", &l, "args.txt").err().unwrap_or_default();
        assert!(err.contains("line 3 of args.txt has 2 columns"), "{err}");
        let err = substitute("{0}", &l, "args.txt").err().unwrap_or_default();
        assert!(err.contains("count from 1"), "{err}");
    }

    #[test]
    fn placeholders_are_recognised() {
        assert!(has_placeholder("{}"));
        assert!(has_placeholder("a{12}b"));
        assert!(has_placeholder("{#}"));
        assert!(has_placeholder("{x}{/.}"));
        assert!(!has_placeholder("{x}"));
        assert!(!has_placeholder("plain"));
        assert!(!has_placeholder("{"));
    }
}
