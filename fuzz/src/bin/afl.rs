//! The AFL++ driver: `sigil-fuzz-afl <target>` runs one of [`sigil_fuzz::TARGETS`] under
//! afl-fuzz (persistent mode, a panic is a crash). Built by `cargo afl build --features afl`
//! only; `make fuzz` runs it.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    if name == "--list" {
        for t in sigil_fuzz::TARGETS {
            println!("{}", t.name);
        }
        return;
    }
    let Some(target) = sigil_fuzz::target(&name) else {
        let names: Vec<&str> = sigil_fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!("usage: sigil-fuzz-afl <{}>", names.join("|"));
        std::process::exit(2);
    };
    afl::fuzz(true, |data| (target.run)(data));
}
