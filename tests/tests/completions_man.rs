//! `sigil completions` loaded into the real bash, zsh and fish and asked to complete, and the
//! man pages `make man` writes rendered by groff/man-db without a warning, one per command.

use std::path::Path;
use std::process::{Command, Output};

use sigil_e2e::{on_path, sigil_cli, sigild};

/// The shells and renderers these tests drive; missing ones fail with the install command.
fn require(tools: &[(&str, &str)]) {
    for (tool, package) in tools {
        assert!(
            on_path(tool),
            "{tool} missing: run `make deps` or `apt-get install -y {package}`"
        );
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// The script `sigil completions SHELL` prints, saved to a file the shell sources.
fn completion_script(dir: &Path, shell: &str) -> std::path::PathBuf {
    let out = run(Command::new(sigil_cli()).args(["completions", shell]));
    assert!(!out.stdout.is_empty(), "empty {shell} script");
    let path = dir.join(format!("sigil.{shell}"));
    std::fs::write(&path, &out.stdout).expect("write script");
    path
}

/// Asks bash's completion function for the words that complete the last one of `line`.
fn bash_complete(script: &Path, line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split(' ').collect();
    let program = format!(
        "source \"$1\"; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{line}\"; \
         COMP_POINT=${{#COMP_LINE}}; _sigil sigil \"${{COMP_WORDS[COMP_CWORD]}}\" \
         \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = words.join(" "),
        cword = words.len() - 1,
    );
    let out = run(Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program, "bash"])
        .arg(script));
    stdout(&out).lines().map(str::to_owned).collect()
}

#[test]
fn bash_completes_commands_subcommands_and_flags() {
    require(&[("bash", "bash")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = completion_script(dir.path(), "bash");
    assert_eq!(bash_complete(&script, "sigil tu"), ["tuf"]);
    assert_eq!(bash_complete(&script, "sigil tuf pu"), ["publish"]);
    assert_eq!(
        bash_complete(&script, "sigil key generate --ro"),
        ["--role"]
    );
    let top = bash_complete(&script, "sigil ");
    for command in [
        "key",
        "sign",
        "verify",
        "tuf",
        "audit",
        "completions",
        "manpages",
    ] {
        assert!(
            top.iter().any(|w| w == command),
            "{command} not offered: {top:?}"
        );
    }
}

#[test]
fn zsh_registers_the_completion_function() {
    require(&[("zsh", "zsh")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = completion_script(dir.path(), "zsh");
    run(Command::new("zsh").arg("-n").arg(&script));
    let out = run(Command::new("zsh")
        .args([
            "-f",
            "-c",
            "autoload -Uz compinit && compinit -u -D && source \"$1\" && print -r -- $_comps[sigil]",
            "zsh",
        ])
        .arg(&script));
    assert_eq!(stdout(&out).trim(), "_sigil");
}

#[test]
fn fish_completes_with_descriptions() {
    require(&[("fish", "fish")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = completion_script(dir.path(), "fish");
    let out = run(Command::new("fish")
        .args([
            "--no-config",
            "-c",
            "source $argv[1]; complete -C 'sigil tuf pu'; complete -C 'sigil key generate --ro'",
        ])
        .arg(&script));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("publish\tPublish the staged changes"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("--role\tTUF role the key will serve"),
        "{text}"
    );
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(sigil_cli())
        .args(["completions", "tcsh"])
        .output()
        .expect("spawn");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'tcsh'") && err.contains("bash"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// groff's warnings (-ww) for one page, with man-db's UTF-8 preprocessing (-k).
fn groff_warnings(page: &Path) -> String {
    let out = run(Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
        .arg(page));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What `man -l` shows for a page, as plain text.
fn man_text(page: &Path) -> String {
    let out = run(Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100"));
    // man-db overstrikes bold when not on a terminal: drop "X\bX" pairs.
    let text = stdout(&out);
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn man_pages_cover_every_command_and_render_cleanly() {
    require(&[("groff", "groff-base"), ("man", "man-db")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (man1, man8) = (dir.path().join("man1"), dir.path().join("man8"));
    // What `make man` runs.
    run(Command::new(sigil_cli()).arg("manpages").arg(&man1));
    run(Command::new(sigild()).arg("--generate-man").arg(&man8));

    let mut pages: Vec<String> = std::fs::read_dir(&man1)
        .expect("man1")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    // Every command `sigil --help` lists has a page, and its subcommands theirs.
    let help = stdout(&run(Command::new(sigil_cli()).arg("--help")));
    let commands = help
        .split("Commands:")
        .nth(1)
        .expect("a command list")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // Continuation lines of a long description are indented further than command names.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect::<Vec<_>>();
    assert!(commands.len() >= 18, "{commands:?}");
    for command in &commands {
        let page = format!("sigil-{command}.1");
        assert!(pages.contains(&page), "no {page} in {pages:?}");
    }
    for page in [
        "sigil.1",
        "sigil-tuf-publish.1",
        "sigil-key-generate.1",
        "sigil-audit-verify.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "no {page} in {pages:?}");
    }
    assert!(!pages.iter().any(|p| p.contains("help")), "{pages:?}");

    for page in &pages {
        let warnings = groff_warnings(&man1.join(page));
        assert!(warnings.is_empty(), "{page}: {warnings}");
    }
    let sigild_page = man8.join("sigild.8");
    assert_eq!(groff_warnings(&sigild_page), "");

    let top = man_text(&man1.join("sigil.1"));
    for needle in [
        "SIGIL_SOCKET",
        "EXIT STATUS",
        "4  permission denied",
        "sigil-tuf(1)",
    ] {
        assert!(top.contains(needle), "{needle:?} not in sigil(1):\n{top}");
    }
    let sign = man_text(&man1.join("sigil-sign.1"));
    assert!(
        sign.contains("EXAMPLES")
            && sign.contains("sigil sign --key $KEY release.tar.gz > release.tar.gz.sig\n"),
        "examples keep their lines:\n{sign}"
    );
    let daemon = man_text(&sigild_page);
    for needle in [
        "sigild(8)",
        "--config",
        "CONFIGURATION AND SIGNALS",
        "SIGHUP",
        "sigil(1)",
    ] {
        assert!(
            daemon.contains(needle),
            "{needle:?} not in sigild(8):\n{daemon}"
        );
    }
    assert!(
        !daemon.contains("generate-man"),
        "the packaging flag stays hidden"
    );
}
