//! The configuration file, as an operator might write it.
//!
//! The config parser lives in the binary crate; it is compiled in here from its
//! own source with `#[path]`, unchanged, since it needs nothing else of the
//! binary. Beyond not panicking: every refusal is one line (the daemon prints it
//! after `error: `), and a syntax error points at a line and column of the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unreachable_pub, reason = "only parse is fuzzed")]
#[path = "../../crates/callvault/src/config.rs"]
mod config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(error) = config::parse(text) else {
        return;
    };
    let message = error.to_string();
    assert!(
        !message.contains('\n'),
        "a config error spans lines: {message:?}"
    );
    assert!(!message.trim().is_empty(), "a config error says nothing");
    if let config::ConfigError::Syntax { line, column, .. } = error {
        let lines = text.split('\n').count();
        assert!(
            line >= 1 && line <= lines,
            "line {line} of a {lines}-line text"
        );
        let width = text
            .split('\n')
            .nth(line - 1)
            .map_or(0, |l| l.chars().count());
        assert!(
            column >= 1 && column <= width + 1,
            "column {column} of a {width}-character line"
        );
    }
});
