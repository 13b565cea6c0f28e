//! What a recording stand-in saw: stand-ins for commands that cannot run here (`gcloud`) append
//! each call's argv to a log, one argument a line, then a line `<end>`.
use std::path::Path;

/// Each recorded call's argv, in order; none when nothing was recorded.
pub fn recorded(log: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut calls = vec![vec![]];
    for line in text.lines() {
        if line == "<end>" {
            calls.push(vec![]);
        } else {
            calls.last_mut().unwrap().push(line.to_owned());
        }
    }
    calls.pop();
    calls
}
