//! `cargo bench -p clawops --bench vs_docker`: clawops against the docker CLI, measured in the
//! same run on the same machine, with the demo app (busybox gateway built FROM scratch) as the
//! workload. Prints a table of medians, ratios and targets (BENCHMARKS.md explains the method).
//!
//! Environment: CLAWOPS_BENCH_IDLE_SECS (default 240) — how long the idle agent samples memory
//! once it has gone quiet (at one sample a second: 240 s ≈ 40 minutes of the default 10 s
//! interval). CLAWOPS_BENCH_ONLY=NAME runs only one of the measures kept in `vs_docker/`
//! (`EXTRA_MEASURES`), each with a workload of its own.
#[path = "vs_docker/overlay.rs"]
mod overlay;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use clawops::demo::DemoApp;
use testkit::{
    agent::{AgentProcess, client_binary},
    cleanup::{AppGuard, ImageGuard},
    container::ServiceContainer,
};

#[path = "vs_docker/image_mode.rs"]
mod image_mode;
#[path = "vs_docker/session.rs"]
mod session;
#[path = "vs_docker/watch.rs"]
mod watch;

struct Row {
    measure: &'static str,
    ours: String,
    theirs: String,
    ratio: String,
    target: &'static str,
    /// `None`: a figure shown for context, with no target of its own.
    met: Option<bool>,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Runs argv (stdout discarded) `n` times; returns the median wall time. Panics on failure
/// unless `allow_fail`.
fn timed(n: usize, argv: &[&str], dir: Option<&Path>, allow_fail: bool) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        let t = Instant::now();
        let out = cmd.output().expect("spawn");
        times.push(t.elapsed());
        assert!(
            allow_fail || out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    median(times)
}

/// Runs a sequence of argvs in `dir`, `n` times; median of the whole sequence.
fn timed_chain(n: usize, chain: &[Vec<String>], dir: &Path) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        for argv in chain {
            let out = Command::new(&argv[0])
                .args(&argv[1..])
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .expect("spawn");
            assert!(
                out.status.success(),
                "{argv:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        times.push(t.elapsed());
    }
    median(times)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Probes `port`'s /healthz every 10 ms while `work` runs; returns the longest run of failed
/// probes (the downtime a user would see).
fn downtime_while(port: u16, work: impl FnOnce()) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let prober = std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let mut down_since: Option<Instant> = None;
        while !flag.load(Ordering::Relaxed) {
            let up = healthz(port);
            match (up, down_since) {
                (false, None) => down_since = Some(Instant::now()),
                (true, Some(t)) => {
                    longest = longest.max(t.elapsed());
                    down_since = None;
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        longest
    });
    work();
    // Let the new container come up before stopping the probe.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthz(port) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    prober.join().unwrap()
}

fn healthz(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

type Measure = fn(&tokio::runtime::Runtime) -> Vec<Row>;

/// Measures with a workload of their own (registry, overlay, …), run after the demo app's.
const EXTRA_MEASURES: &[(&str, Measure)] = &[
    ("overlay", overlay::rows),
    ("image_mode", image_mode::rows),
    ("watch", watch_rows),
];

/// Idle RSS with watching on, over the same idle window as the main idle row.
fn watch_rows(rt: &tokio::runtime::Runtime) -> Vec<Row> {
    watch::rows(rt, idle_secs())
}

fn idle_secs() -> u64 {
    std::env::var("CLAWOPS_BENCH_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(240)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let rt = tokio::runtime::Runtime::new().unwrap();
    // `session` shares the demo app's agent: it is picked out below, once that runs.
    if let Ok(only) = std::env::var("CLAWOPS_BENCH_ONLY")
        && only != "session"
    {
        let Some((_, measure)) = EXTRA_MEASURES.iter().find(|(name, _)| *name == only) else {
            let names: Vec<_> = EXTRA_MEASURES.iter().map(|(name, _)| *name).collect();
            panic!(
                "CLAWOPS_BENCH_ONLY={only}: expected session or one of {}",
                names.join(", ")
            );
        };
        print_rows(&measure(&rt));
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let app = DemoApp::create(root.path(), &testkit::unique("b")[2..]).unwrap();
    let _guard = AppGuard::new(&app.project, &app.image_repo);
    let manual_project = format!("{}-manual", app.project);
    let manual_image = format!("{}-manual:latest", app.image_repo);
    let _manual_guard = AppGuard::new(&manual_project, &format!("{}-manual", app.image_repo));
    // Each manual build leaves the previous image untagged: remember every one to remove it.
    let mut manual_images = ImageGuard::default();
    let mut remember_manual_image = || {
        let out = Command::new("docker")
            .args(["image", "inspect", "-f", "{{.Id}}", &manual_image])
            .output()
            .unwrap();
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !id.is_empty() && !manual_images.refs.contains(&id) {
            manual_images.add(id);
        }
    };

    let mut config = app.config();
    config.memory.sample_interval_secs = 1;
    let mut value = toml::Value::try_from(&config).unwrap();
    for key in ["listen", "token_file", "state_dir"] {
        value.as_table_mut().unwrap().remove(key);
    }
    let extra = toml::to_string(&value).unwrap();
    let agent = AgentProcess::start(&extra);
    let clawops = client_binary();
    let clawops = clawops.to_str().unwrap().to_owned();
    let token_file = agent.token_file().display().to_string();
    let url = agent.url();
    let cli = |args: &[&str]| -> Vec<String> {
        let mut v = vec![
            clawops.clone(),
            "--addr".into(),
            url.clone(),
            "--token-file".into(),
            token_file.clone(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: &[&str], n: usize, allow_fail: bool| {
        let argv = cli(args);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        timed(n, &refs, None, allow_fail)
    };
    let mut rows = Vec::new();

    // The manual chain's own checkout: same remote, its own port, image and project.
    let manual = root.path().join("manual");
    git(
        root.path(),
        &["clone", "-q", app.remote.to_str().unwrap(), "manual"],
    );
    let manual_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        manual.join(".env"),
        format!(
            "OPENCLAW_IMAGE={}-manual:latest\nOPENCLAW_GATEWAY_PORT={manual_port}\nOPENCLAW_CONFIG_DIR={}\n",
            app.image_repo,
            app.state_dir.display()
        ),
    )
    .unwrap();
    let compose = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["docker-compose".into(), "-p".into(), manual_project.clone()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let manual_chain = vec![
        vec!["git".to_string(), "pull".into(), "-q".into()],
        compose(&["build", "-q"]),
        compose(&["up", "-d"]),
    ];

    eprintln!("deploying v1 with clawops and with the manual chain…");
    run(&["update"], 1, false);
    let gateway = format!("{}-openclaw-gateway-1", app.project);
    let image = format!("{}:latest", app.image_repo);
    let session_setup = session::Setup {
        clawops: &clawops,
        agent: &agent,
        gateway: &gateway,
        service: "openclaw-gateway",
        image: &image,
    };
    if std::env::var("CLAWOPS_BENCH_ONLY").as_deref() == Ok("session") {
        eprintln!("measuring run/exec only (CLAWOPS_BENCH_ONLY=session)…");
        print_rows(&session::rows(&session_setup));
        return;
    }
    timed_chain(1, &manual_chain, &manual);
    remember_manual_image();

    // Real update: downtime as a prober on /healthz sees it.
    app.commit("v2", "ok", "v2").unwrap();
    let ours = downtime_while(app.port, || {
        run(&["update"], 1, false);
    });
    let theirs = downtime_while(manual_port, || {
        timed_chain(1, &manual_chain, &manual);
    });
    remember_manual_image();
    rows.push(Row {
        measure: "update downtime (probe every 10 ms)",
        ours: ms(ours),
        theirs: ms(theirs),
        ratio: format!(
            "{:.2}×",
            ours.as_secs_f64() / theirs.as_secs_f64().max(1e-9)
        ),
        target: "≤ 1× the manual chain's",
        met: Some(ours <= theirs),
    });

    // No-op update.
    let ours = run(&["update"], 7, false);
    let theirs = timed_chain(3, &manual_chain, &manual);
    let ratio = theirs.as_secs_f64() / ours.as_secs_f64();
    rows.push(Row {
        measure: "no-op update",
        ours: ms(ours),
        theirs: ms(theirs),
        ratio: format!("{ratio:.1}× faster"),
        target: "≥ 10×, ≤ 500 ms",
        met: Some(ratio >= 10.0 && ours <= Duration::from_millis(500)),
    });

    // memory --json vs docker stats --no-stream.
    let ours = run(&["memory", "--json"], 9, false);
    let theirs = timed(
        5,
        &["docker", "stats", "--no-stream", &gateway],
        None,
        false,
    );
    let ratio = theirs.as_secs_f64() / ours.as_secs_f64();
    rows.push(Row {
        measure: "memory --json vs docker stats --no-stream",
        ours: ms(ours),
        theirs: ms(theirs),
        ratio: format!("{ratio:.1}× faster"),
        target: "≥ 20×, ≤ 50 ms",
        met: Some(ratio >= 20.0 && ours <= Duration::from_millis(50)),
    });

    // verify gog goplaces wacli vs three `docker exec which`. The first run probes (one Docker
    // exec per binary); the runs after it reuse those results for the unchanged files of the
    // same container run, as an operator's repeated checks do. `--fresh` is shown beside it.
    let ours = run(&["verify", "gog", "goplaces", "wacli"], 7, false);
    let fresh = run(&["verify", "--fresh", "gog", "goplaces", "wacli"], 5, false);
    let mut three = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for bin in ["gog", "goplaces", "wacli"] {
            timed(1, &["docker", "exec", &gateway, "which", bin], None, false);
        }
        three.push(t.elapsed());
    }
    let theirs = median(three);
    let ratio = theirs.as_secs_f64() / ours.as_secs_f64();
    rows.push(Row {
        measure: "verify gog goplaces wacli vs 3 × docker exec which",
        ours: ms(ours),
        theirs: ms(theirs),
        ratio: format!("{ratio:.1}× faster"),
        target: "≥ 3×",
        met: Some(ratio >= 3.0),
    });
    rows.push(Row {
        measure: "verify --fresh (every probe run now) vs 3 × docker exec which",
        ours: ms(fresh),
        theirs: ms(theirs),
        ratio: format!("{:.1}× faster", theirs.as_secs_f64() / fresh.as_secs_f64()),
        target: "none (each probe is a Docker exec)",
        met: None,
    });

    eprintln!("measuring run/exec…");
    rows.extend(session::rows(&session_setup));

    // logs --tail 100000 vs docker logs --tail 100000.
    rt.block_on(
        ServiceContainer::new(&app.project, "chatty", &image)
            .script("seq 1 100000; exec sleep 3600")
            .start(),
    );
    let chatty = format!("{}-chatty-1", app.project);
    for _ in 0..200 {
        let out = Command::new("docker")
            .args(["logs", "--tail", "1", &chatty])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() == "100000" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ours = run(
        &["logs", "--service", "chatty", "--tail", "100000"],
        5,
        false,
    );
    let theirs = timed(
        5,
        &["docker", "logs", "--tail", "100000", &chatty],
        None,
        false,
    );
    let ratio = theirs.as_secs_f64() / ours.as_secs_f64();
    rows.push(Row {
        measure: "logs --tail 100000 vs docker logs --tail 100000",
        ours: ms(ours),
        theirs: ms(theirs),
        ratio: format!("{ratio:.2}× faster"),
        target: "≥ 1×",
        met: Some(ratio >= 1.0),
    });

    // Idle RSS: a fresh agent that only samples memory. Start-up leaves ~10 MiB of code
    // resident; the agent gives it back once quiet (clawops_agent::trim), then must stay flat.
    let idle_secs = idle_secs();
    let idle = AgentProcess::start(&extra);
    let idle_pid = idle.pid().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let at_start = rss_kib(idle_pid);
    let settle = 2 * clawops_agent::trim::QUIET + Duration::from_secs(5);
    eprintln!(
        "sampling memory in an idle agent for {} s…",
        settle.as_secs() + idle_secs
    );
    std::thread::sleep(settle);
    let settled = rss_kib(idle_pid);
    // Code that runs now and then (the first of each periodic path) maps back in during the
    // first part of the window; "no growth" is judged on the second half.
    let mut readings = Vec::new();
    for _ in 0..idle_secs {
        std::thread::sleep(Duration::from_secs(1));
        readings.push(rss_kib(idle_pid));
    }
    let idle_mid = readings[readings.len() / 2];
    let idle_end = *readings.last().unwrap();
    let mib = |kib: u64| kib as f64 / 1024.0;
    rows.push(Row {
        measure: "agent idle RSS (1 sample/s)",
        ours: format!(
            "{:.1} MiB after start-up, {:.1} MiB once quiet, {:.1} MiB {} s later, {:.1} MiB \
             {idle_secs} s later",
            mib(at_start),
            mib(settled),
            mib(idle_mid),
            idle_secs / 2,
            mib(idle_end)
        ),
        theirs: "-".into(),
        ratio: "-".into(),
        target: "≤ 8 MiB, no growth",
        met: Some(idle_end <= 8 * 1024 && idle_end <= idle_mid + 64),
    });
    // RSS of that same agent while a client follows 100k fresh lines, against its idle RSS.
    let pid = idle_pid;
    let before = rss_kib(pid);
    rt.block_on(
        ServiceContainer::new(&app.project, "burst", &image)
            .script("sleep 2; seq 1 100000; exec sleep 3600")
            .start(),
    );
    let idle_token = idle.token_file().display().to_string();
    let argv = [
        clawops.as_str(),
        "--addr",
        &idle.url(),
        "--token-file",
        &idle_token,
        "logs",
        "-f",
        "--service",
        "burst",
        "--tail",
        "all",
    ];
    let mut follower = Command::new(argv[0])
        .args(&argv[1..])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let reader = std::thread::spawn(move || {
        let mut n = 0u64;
        for line in BufReader::new(stdout).lines() {
            if line.is_err() {
                break;
            }
            n += 1;
            if n == 100_000 {
                break;
            }
        }
        flag.store(true, Ordering::Relaxed);
        n
    });
    let mut peak = before;
    while !done.load(Ordering::Relaxed) {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(10));
    }
    let lines = reader.join().unwrap();
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(lines, 100_000, "the follower received every line");

    rows.push(Row {
        measure: "agent RSS while a client follows 100k lines",
        ours: format!("peak {:.1} MiB (idle {:.1} MiB)", mib(peak), mib(idle_end)),
        theirs: "-".into(),
        ratio: format!("{:.2}× idle", peak as f64 / idle_end.max(1) as f64),
        target: "≤ 2× idle",
        met: Some(peak <= 2 * idle_end),
    });

    for (_, measure) in EXTRA_MEASURES {
        rows.extend(measure(&rt));
    }
    print_rows(&rows);
    drop(rt);
}

fn print_rows(rows: &[Row]) {
    println!(
        "\n| measure | clawops | docker CLI | ratio | target | met |\n|---|---|---|---|---|---|"
    );
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.measure,
            r.ours,
            r.theirs,
            r.ratio,
            r.target,
            match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        );
    }
}
