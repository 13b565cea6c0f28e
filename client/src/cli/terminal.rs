//! The local terminal for `clawops run` / `clawops exec`: is there one, its size, and raw mode
//! that is undone on every way out (return, error, panic unwinding; signals are turned into a
//! return by the caller).
use std::io::IsTerminal;

use rustix::termios::{self, OptionalActions, Termios};

/// Whether stdin and stdout are terminals.
#[derive(Debug, Clone, Copy)]
pub struct Local {
    pub stdin: bool,
    pub stdout: bool,
}

impl Local {
    pub fn detect() -> Self {
        Self {
            stdin: std::io::stdin().is_terminal(),
            stdout: std::io::stdout().is_terminal(),
        }
    }
}

/// The terminal's size as (rows, cols), from stdout (or stdin when stdout is redirected).
pub fn size() -> Option<(u16, u16)> {
    let from =
        |ws: termios::Winsize| (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col));
    termios::tcgetwinsize(std::io::stdout())
        .ok()
        .and_then(from)
        .or_else(|| termios::tcgetwinsize(std::io::stdin()).ok().and_then(from))
}

/// Stdin's terminal in raw mode (no echo, no line editing, no signals from Ctrl-C: every key
/// goes to the remote terminal) until dropped.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub fn enable() -> std::io::Result<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing else can be done about a failure here; the shell's `reset` fixes it.
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}
