//! A GCE metadata server on 127.0.0.1: answers like the real one (403 without
//! `Metadata-Flavor: Google`, the header echoed on answers, HTTP/1.1 keep-alive). It runs on its
//! own thread and runtime, so it keeps answering while a test blocks on a child process.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The answers of an e2-micro VM named `openclaw-gateway` in us-central1-a.
pub const E2_MICRO: [(&str, &str); 4] = [
    (
        "/instance/machine-type",
        "projects/123456789/machineTypes/e2-micro",
    ),
    ("/instance/name", "openclaw-gateway"),
    ("/instance/zone", "projects/123456789/zones/us-central1-a"),
    ("/project/project-id", "my-claw-project"),
];

type Answers = Arc<Mutex<HashMap<String, String>>>;

pub struct FakeGce {
    /// Base URL, as `[memory] metadata_url` takes it.
    pub url: String,
    /// (path, whether the request had `Metadata-Flavor: Google`)
    pub requests: Arc<Mutex<Vec<(String, bool)>>>,
    answers: Answers,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeGce {
    /// Serves `answers` (paths under `/computeMetadata/v1`). With `flavor_header` false it
    /// answers without `Metadata-Flavor: Google`, like a proxy or captive portal would.
    pub fn start(answers: &[(&str, &str)], flavor_header: bool) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "http://{}/computeMetadata/v1",
            listener.local_addr().unwrap()
        );
        let answers: Answers = Arc::new(Mutex::new(
            answers
                .iter()
                .map(|(p, v)| (format!("/computeMetadata/v1{p}"), v.to_string()))
                .collect(),
        ));
        let served = answers.clone();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let serve = async {
                        while let Ok((conn, _)) = listener.accept().await {
                            tokio::spawn(serve_conn(
                                conn,
                                served.clone(),
                                seen.clone(),
                                flavor_header,
                            ));
                        }
                    };
                    tokio::select! {
                        _ = serve => {}
                        _ = stop_rx => {}
                    }
                });
        });
        Self {
            url,
            requests,
            answers,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<(String, bool)> {
        self.requests.lock().unwrap().clone()
    }

    /// Changes one answer (a path under `/computeMetadata/v1`), as a resize changes
    /// `/instance/machine-type`.
    pub fn set(&self, path: &str, value: &str) {
        self.answers
            .lock()
            .unwrap()
            .insert(format!("/computeMetadata/v1{path}"), value.to_owned());
    }
}

impl Drop for FakeGce {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve_conn(
    mut conn: tokio::net::TcpStream,
    answers: Answers,
    seen: Arc<Mutex<Vec<(String, bool)>>>,
    flavor_header: bool,
) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = [0u8; 1024];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 4);
        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
        let flavor = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("metadata-flavor: google"));
        seen.lock().unwrap().push((path.clone(), flavor));
        let answer = answers.lock().unwrap().get(&path).cloned();
        let (status, body) = match answer {
            _ if !flavor => (
                "403 Forbidden",
                "Missing required header \"Metadata-Flavor\": \"Google\"".to_string(),
            ),
            Some(v) => ("200 OK", v),
            None => ("404 Not Found", "not found".to_string()),
        };
        let echo = if flavor_header {
            "Metadata-Flavor: Google\r\n"
        } else {
            ""
        };
        let response = format!(
            "HTTP/1.1 {status}\r\n{echo}Content-Type: application/text\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
