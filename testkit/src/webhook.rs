//! A webhook receiver on 127.0.0.1 for notification tests: plain HTTP/1.1 over std::net in a
//! thread, recording every POST. It can answer 500 to the first attempts, or never answer.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: serde_json::Value,
    /// The answer it got (500 while failing, 200 after; 0 when never answered).
    pub answered: u16,
}

#[derive(Debug)]
pub struct Webhook {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Webhook {
    /// Answers 500 to the first `fail_first` requests, 200 after.
    pub fn start(fail_first: usize) -> Self {
        Self::spawn(fail_first, false)
    }

    /// Accepts connections and reads requests but never answers.
    pub fn hanging() -> Self {
        Self::spawn(0, true)
    }

    fn spawn(fail_first: usize, hang: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let (rec, stopping) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            // Hung connections stay open until the receiver is dropped.
            let mut held = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let Some((path, body)) = read_request(&stream) else {
                    continue;
                };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let answered = match (hang, n < fail_first) {
                    (true, _) => 0,
                    (false, true) => 500,
                    (false, false) => 200,
                };
                rec.lock().unwrap().push(Received {
                    path,
                    body,
                    answered,
                });
                if hang {
                    held.push(stream);
                } else {
                    respond(stream, answered);
                }
            }
        });
        Self {
            port,
            received,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until a request satisfies `pred`; panics after `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Received) -> bool) -> Received {
        let start = Instant::now();
        loop {
            if let Some(r) = self.received().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                start.elapsed() < timeout,
                "no matching request within {timeout:?}; got {:?}",
                self.received()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_request(stream: &TcpStream) -> Option<(String, serde_json::Value)> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, serde_json::from_slice(&body).unwrap_or_default()))
}

fn respond(mut stream: TcpStream, status: u16) {
    let reason = if status == 200 {
        "OK"
    } else {
        "Internal Server Error"
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let _ = stream.flush();
}
