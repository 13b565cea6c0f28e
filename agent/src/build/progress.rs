//! Turns the engine's build stream into [`BuildLine`] events as they arrive, for both builders:
//! BuildKit (`moby.buildkit.trace` status messages: vertexes named like `[stage 2/5] RUN …`, and
//! their logs in arbitrary byte chunks) and the classic builder (`Step 2/5 : RUN …` then output
//! lines). It also keeps the last lines of every step, so a failure can name the step that
//! failed and show its output.
use std::{
    collections::{HashMap, VecDeque},
    sync::LazyLock,
};

use crate::docker::models::{BuildInfo, BuildInfoAux, StatusResponse, Vertex};
use regex::Regex;

use crate::events::{BuildLine, Event, EventSink};

/// Lines of a failed step returned to the caller.
pub const TAIL_LINES: usize = 30;

static BUILDKIT_STEP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\[(?:[^\]]*? )?(\d+)/(\d+)\]").expect("regex"));
static CLASSIC_STEP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^Step (\d+)/(\d+) : (.*)$").expect("regex"));

/// The step that failed and what it printed last.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    pub step: String,
    pub message: String,
    pub output_tail: Vec<String>,
}

#[derive(Debug, Default)]
struct Step {
    name: String,
    step: u32,
    total: u32,
    started: bool,
    /// Order in which steps started, to find the one running when a build is cut short.
    started_seq: u64,
    done: bool,
    error: String,
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

impl Step {
    fn named(name: &str) -> Self {
        let (step, total) = parse_buildkit_step(name);
        Self {
            name: name.to_owned(),
            step,
            total,
            ..Default::default()
        }
    }

    fn remember(&mut self, line: &str) {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());
    }
}

/// `[builder 2/5] RUN x` → (2, 5); internal vertexes → (0, 0).
pub fn parse_buildkit_step(name: &str) -> (u32, u32) {
    BUILDKIT_STEP
        .captures(name)
        .and_then(|c| Some((c[1].parse().ok()?, c[2].parse().ok()?)))
        .unwrap_or((0, 0))
}

/// Follows one build's stream.
#[derive(Debug)]
pub struct Progress<'a> {
    sink: &'a EventSink,
    /// BuildKit vertexes by digest; the classic builder's steps by `classic-<n>`.
    steps: HashMap<String, Step>,
    current_classic: Option<String>,
    classic_partial: String,
    /// Lines that belong to no step (e.g. "Successfully tagged").
    other: VecDeque<String>,
    /// Any BuildKit vertex or classic step seen: the builder is working.
    pub saw_progress: bool,
    pub image_id: Option<String>,
    pub lines: u64,
    started_count: u64,
}

impl<'a> Progress<'a> {
    pub fn new(sink: &'a EventSink) -> Self {
        Self {
            sink,
            steps: HashMap::new(),
            current_classic: None,
            classic_partial: String::new(),
            other: VecDeque::new(),
            saw_progress: false,
            image_id: None,
            lines: 0,
            started_count: 0,
        }
    }

    pub fn on_info(&mut self, info: BuildInfo) {
        match info.aux {
            Some(BuildInfoAux::BuildKit(status)) => self.on_buildkit(status),
            Some(BuildInfoAux::Default(image)) => {
                if let Some(id) = image.id {
                    self.image_id = Some(id);
                }
            }
            None => {}
        }
        if let Some(text) = info.stream {
            self.on_classic_text(&text);
        }
        if let Some(status) = info.status.filter(|s| !s.trim().is_empty()) {
            self.emit_other(status.trim());
        }
    }

    fn on_buildkit(&mut self, status: StatusResponse) {
        for v in status.vertexes {
            self.saw_progress = true;
            let step = self
                .steps
                .entry(v.digest.clone())
                .or_insert_with(|| Step::named(&v.name));
            let mut events = Vec::new();
            if v.started.is_some() && !step.started {
                step.started = true;
                self.started_count += 1;
                step.started_seq = self.started_count;
                events.push(String::new());
            }
            if v.completed.is_some() && !step.done {
                step.done = true;
                flush_partial(step, &mut events);
                if !v.error.is_empty() {
                    step.error = v.error.clone();
                    events.push(format!("ERROR: {}", v.error));
                } else if v.cached {
                    events.push("CACHED".into());
                } else if step.step > 0 {
                    events.push(format!("DONE {}", elapsed(&v)));
                }
            }
            let (name, n, total) = (step.name.clone(), step.step, step.total);
            for line in events {
                self.emit(&name, n, total, line);
            }
        }
        for log in status.logs {
            let Some(step) = self.steps.get_mut(&log.vertex) else {
                continue;
            };
            step.partial.extend_from_slice(&log.msg);
            let mut lines = Vec::new();
            while let Some(pos) = step.partial.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = step.partial.drain(..=pos).collect();
                lines.push(clean_line(&raw));
            }
            for line in &lines {
                step.remember(line);
            }
            let (name, n, total) = (step.name.clone(), step.step, step.total);
            for line in lines {
                self.emit(&name, n, total, line);
            }
        }
        for w in status.warnings {
            let text = String::from_utf8_lossy(&w.short).trim().to_owned();
            if !text.is_empty() {
                self.sink.warning(format!("builder: {text}"));
            }
        }
    }

    fn on_classic_text(&mut self, text: &str) {
        self.classic_partial.push_str(text);
        while let Some(pos) = self.classic_partial.find('\n') {
            let raw: String = self.classic_partial.drain(..=pos).collect();
            let line = clean_line(raw.as_bytes());
            self.classic_line(&line);
        }
    }

    fn classic_line(&mut self, line: &str) {
        if let Some(c) = CLASSIC_STEP.captures(line) {
            self.saw_progress = true;
            let n: u32 = c[1].parse().unwrap_or(0);
            let total: u32 = c[2].parse().unwrap_or(0);
            let key = format!("classic-{n}");
            let name = format!("[{n}/{total}] {}", &c[3]);
            self.steps.insert(
                key.clone(),
                Step {
                    name: name.clone(),
                    step: n,
                    total,
                    started: true,
                    ..Default::default()
                },
            );
            self.current_classic = Some(key);
            self.emit(&name, n, total, String::new());
            return;
        }
        // Classic chatter that says nothing about the user's build.
        let trimmed = line.trim();
        let noise = trimmed == "--->"
            || trimmed.starts_with("---> Running in ")
            || trimmed.starts_with("Removing intermediate container")
            || trimmed
                .strip_prefix("---> ")
                .is_some_and(|id| id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        if noise {
            return;
        }
        let shown = if trimmed == "---> Using cache" {
            "CACHED".to_owned()
        } else {
            line.to_owned()
        };
        if let Some(id) = trimmed.strip_prefix("Successfully built ") {
            self.image_id.get_or_insert_with(|| id.to_owned());
        }
        let current = self
            .current_classic
            .as_ref()
            .and_then(|k| self.steps.get_mut(k));
        match current {
            Some(step) if !line.starts_with("Successfully ") => {
                step.remember(&shown);
                let (name, n, total) = (step.name.clone(), step.step, step.total);
                self.emit(&name, n, total, shown);
            }
            _ => self.emit_other(&shown),
        }
    }

    fn emit_other(&mut self, line: &str) {
        if self.other.len() == TAIL_LINES {
            self.other.pop_front();
        }
        self.other.push_back(line.to_owned());
        self.emit("", 0, 0, line.to_owned());
    }

    fn emit(&mut self, name: &str, step: u32, total: u32, line: String) {
        self.lines += 1;
        self.sink.emit(Event::Build(BuildLine {
            step,
            total_steps: total,
            step_name: name.to_owned(),
            line,
        }));
    }

    /// Flushes half lines (the stream ended without a newline).
    pub fn finish(&mut self) {
        if !self.classic_partial.is_empty() {
            let rest = std::mem::take(&mut self.classic_partial);
            self.classic_line(&clean_line(rest.as_bytes()));
        }
    }

    /// Which step failed (the vertex with an error, else the last classic step) and its tail.
    pub fn failure(&mut self, message: &str) -> Failure {
        self.finish();
        let failed = self
            .steps
            .values()
            .find(|s| !s.error.is_empty())
            .or_else(|| {
                self.current_classic
                    .as_ref()
                    .and_then(|k| self.steps.get(k))
            })
            .or_else(|| {
                // Cut short (timeout): the step that started last and never finished.
                self.steps
                    .values()
                    .filter(|s| s.started && !s.done)
                    .max_by_key(|s| s.started_seq)
            });
        match failed {
            Some(step) => Failure {
                step: step.name.clone(),
                message: message.trim().to_owned(),
                output_tail: step.tail.iter().cloned().collect(),
            },
            None => Failure {
                step: String::new(),
                message: message.trim().to_owned(),
                output_tail: self.other.iter().cloned().collect(),
            },
        }
    }
}

fn flush_partial(step: &mut Step, events: &mut Vec<String>) {
    if !step.partial.is_empty() {
        let raw = std::mem::take(&mut step.partial);
        let line = clean_line(&raw);
        step.remember(&line);
        events.push(line);
    }
}

/// A line without its newline; of `\r`-separated redraws only the last one counts.
fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\n', '\r']);
    let last = text.rsplit('\r').next().unwrap_or(text);
    last.trim_end().to_owned()
}

fn elapsed(v: &Vertex) -> String {
    match (&v.started, &v.completed) {
        (Some(s), Some(c)) => {
            let ms = (c.seconds - s.seconds) * 1000 + i64::from(c.nanos - s.nanos) / 1_000_000;
            format!("{:.1}s", ms.max(0) as f64 / 1000.0)
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::docker::models::VertexLog;

    use super::*;

    fn collect(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>) -> Vec<BuildLine> {
        let mut out = Vec::new();
        while let Ok(Event::Build(l)) = rx.try_recv() {
            out.push(l);
        }
        out
    }

    fn with_times(mut v: Vertex, started: Option<i64>, completed: Option<i64>) -> Vertex {
        // The Timestamp type is not exported; fill it through a decoded vertex.
        let mut t = Vertex::default();
        if let Some(s) = started {
            t.started = Some(Default::default());
            t.started.as_mut().unwrap().seconds = s;
        }
        if let Some(c) = completed {
            t.completed = Some(Default::default());
            t.completed.as_mut().unwrap().seconds = c;
        }
        v.started = t.started;
        v.completed = t.completed;
        v
    }

    fn bk(status: StatusResponse) -> BuildInfo {
        BuildInfo {
            aux: Some(BuildInfoAux::BuildKit(status)),
            ..Default::default()
        }
    }

    #[test]
    fn step_numbers_from_vertex_names() {
        assert_eq!(parse_buildkit_step("[2/5] RUN x"), (2, 5));
        assert_eq!(parse_buildkit_step("[stage-0 3/3] COPY a b"), (3, 3));
        assert_eq!(parse_buildkit_step("[builder 10/12] RUN [\"a\"]"), (10, 12));
        assert_eq!(parse_buildkit_step("[internal] load .dockerignore"), (0, 0));
        assert_eq!(parse_buildkit_step("exporting to image"), (0, 0));
    }

    #[test]
    fn buildkit_logs_are_split_into_lines_and_failures_keep_their_tail() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = EventSink::new(tx);
        let mut p = Progress::new(&sink);
        let vertex = |completed: Option<i64>, error: &str| {
            with_times(
                Vertex {
                    digest: "d1".into(),
                    name: "[2/3] RUN make".into(),
                    error: error.into(),
                    ..Default::default()
                },
                Some(1),
                completed,
            )
        };
        p.on_info(bk(StatusResponse {
            vertexes: vec![vertex(None, "")],
            ..Default::default()
        }));
        p.on_info(bk(StatusResponse {
            logs: vec![VertexLog {
                vertex: "d1".into(),
                msg: b"one\ntw".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        }));
        p.on_info(bk(StatusResponse {
            logs: vec![VertexLog {
                vertex: "d1".into(),
                msg: b"o\r\n50%\rdone\nhalf".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        }));
        p.on_info(bk(StatusResponse {
            vertexes: vec![vertex(Some(3), "exit code: 2")],
            ..Default::default()
        }));
        let lines: Vec<_> = collect(&mut rx).into_iter().map(|l| l.line).collect();
        assert_eq!(
            lines,
            ["", "one", "two", "done", "half", "ERROR: exit code: 2"]
        );
        let f = p.failure("failed to solve: exit code: 2");
        assert_eq!(f.step, "[2/3] RUN make");
        assert_eq!(f.output_tail, ["one", "two", "done", "half"]);
    }

    #[test]
    fn classic_steps_and_noise() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = EventSink::new(tx);
        let mut p = Progress::new(&sink);
        for chunk in [
            "Step 1/2 : FROM scratch\n",
            " ---> \n",
            "Step 2/2 : RUN echo hi\n",
            " ---> Running in 0123abcd\n",
            "hi\nthere",
            "\n",
            "Removing intermediate container 0123abcd\n",
            " ---> 89abcdef0123\n",
            "Successfully built 89abcdef0123\n",
        ] {
            p.on_info(BuildInfo {
                stream: Some(chunk.into()),
                ..Default::default()
            });
        }
        let lines = collect(&mut rx);
        let shown: Vec<_> = lines
            .iter()
            .map(|l| (l.step, l.total_steps, l.line.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                (1, 2, ""),
                (2, 2, ""),
                (2, 2, "hi"),
                (2, 2, "there"),
                (0, 0, "Successfully built 89abcdef0123"),
            ]
        );
        assert_eq!(lines[1].step_name, "[2/2] RUN echo hi");
        assert_eq!(p.image_id.as_deref(), Some("89abcdef0123"));
        let f = p.failure("The command '/bin/sh -c x' returned a non-zero code: 1");
        assert_eq!(f.step, "[2/2] RUN echo hi");
        assert_eq!(f.output_tail, ["hi", "there"]);
    }

    #[test]
    fn tail_is_bounded() {
        let sink = EventSink::discard();
        let mut p = Progress::new(&sink);
        p.on_info(BuildInfo {
            stream: Some("Step 1/1 : RUN x\n".into()),
            ..Default::default()
        });
        let many: String = (0..100).map(|i| format!("line {i}\n")).collect();
        p.on_info(BuildInfo {
            stream: Some(many),
            ..Default::default()
        });
        let f = p.failure("x");
        assert_eq!(f.output_tail.len(), TAIL_LINES);
        assert_eq!(f.output_tail.last().unwrap(), "line 99");
    }
}
