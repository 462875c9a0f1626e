//! The control socket's request decoding on arbitrary lines: never a panic, an error is a
//! message for the client, and a decoded command is one of the documented requests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway_control::command::{parse, Command};

fuzz_target!(|line: &[u8]| {
    match parse(line) {
        Ok(Command::Reload { path: Some(path) }) => assert!(!path.as_os_str().is_empty()),
        // Only the admin listener asks for it; the socket has no such request.
        Ok(Command::Metrics) => panic!("the socket decoded a metrics request"),
        Ok(_) => {}
        Err(message) => assert!(!message.is_empty()),
    }
});
