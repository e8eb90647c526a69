//! An HTTP/1.1 echo server stand-in on 127.0.0.1, as agnhost netexec answers `/hostname`: its
//! endpoints are named (pod names), each new connection goes to the next endpoint in turn (as a
//! Service spreads new connections), and each request on it is answered with the endpoint's name
//! (any path). An endpoint may be unreachable: its connections are reset at once (RST). A
//! connection is kept open (keep-alive) and answered on every request until the client closes it
//! or asks `Connection: close`. `reset_all` resets every open connection (a conntrack flush);
//! `blackhole(true)` stops answering (requests are read and left unanswered) until
//! `blackhole(false)`. The server runs on a thread of its own, with its own runtime, so any test
//! (async or not) can use it; it stops when dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One endpoint behind the echo server: its name, and whether it answers.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub reachable: bool,
}

impl Endpoint {
    /// An endpoint that answers with its name.
    pub fn up(name: &str) -> Endpoint {
        Endpoint {
            name: name.into(),
            reachable: true,
        }
    }
    /// An endpoint whose connections are reset at once.
    pub fn down(name: &str) -> Endpoint {
        Endpoint {
            name: name.into(),
            reachable: false,
        }
    }
}

/// What the server's connections share.
struct Shared {
    endpoints: Vec<Endpoint>,
    /// The endpoint the next connection goes to (modulo their count).
    next: AtomicUsize,
    blackholed: AtomicBool,
    /// Bumped by `reset_all`: every open connection resets when it changes.
    resets: tokio::sync::watch::Sender<u64>,
    /// Answers given, per endpoint.
    answered: Mutex<BTreeMap<String, usize>>,
    /// Connections accepted, and connections open now.
    accepted: AtomicUsize,
    open: AtomicUsize,
}

pub struct Echo {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    /// Serve `endpoints` (at least one) on 127.0.0.1, a free port.
    pub fn start(endpoints: &[Endpoint]) -> Echo {
        assert!(!endpoints.is_empty(), "an echo server needs an endpoint");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            endpoints: endpoints.to_vec(),
            next: AtomicUsize::new(0),
            blackholed: AtomicBool::new(false),
            resets: tokio::sync::watch::Sender::new(0),
            answered: Mutex::new(BTreeMap::new()),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                tokio::select! {
                    _ = accept_loop(listener, s) => {}
                    _ = stopped => {}
                }
            });
        });
        Echo {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `host:port` of the server.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Reset (RST) every open connection.
    pub fn reset_all(&self) {
        self.shared.resets.send_modify(|n| *n += 1);
    }

    /// Stop answering (`true`), or answer again (`false`).
    pub fn blackhole(&self, on: bool) {
        self.shared.blackholed.store(on, Ordering::SeqCst);
    }

    /// Answers given so far, per endpoint name.
    pub fn answered(&self) -> BTreeMap<String, usize> {
        self.shared.answered.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((s, _)) = listener.accept().await {
        let n = shared.next.fetch_add(1, Ordering::SeqCst);
        let endpoint = shared.endpoints[n % shared.endpoints.len()].clone();
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if !endpoint.reachable {
            // Reset at once: the client sees its connection reset by peer.
            let _ = s.set_zero_linger();
            drop(s);
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut s = s;
            shared.open.fetch_add(1, Ordering::SeqCst);
            let mut resets = shared.resets.subscribe();
            let reset = tokio::select! {
                _ = serve(&mut s, &endpoint.name, &shared) => false,
                _ = resets.changed() => true,
            };
            shared.open.fetch_sub(1, Ordering::SeqCst);
            if reset {
                let _ = s.set_zero_linger();
            }
        });
    }
}

/// Answer requests on one connection with `name` until the client closes it or asks to.
async fn serve(s: &mut TcpStream, name: &str, shared: &Shared) -> std::io::Result<()> {
    let (r, mut w) = s.split();
    let mut r = BufReader::new(r);
    loop {
        let Some(close) = read_request(&mut r).await? else {
            return Ok(());
        };
        while shared.blackholed.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let connection = if close { "connection: close\r\n" } else { "" };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{connection}\r\n",
            name.len()
        );
        w.write_all(format!("{head}{name}").as_bytes()).await?;
        *shared
            .answered
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default() += 1;
        if close {
            return Ok(());
        }
    }
}

/// One request's head (its body, if any, skipped): whether it asks to close the connection;
/// `None` at the end of the connection.
async fn read_request(
    r: &mut BufReader<tokio::net::tcp::ReadHalf<'_>>,
) -> std::io::Result<Option<bool>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let (mut close, mut len) = (false, 0usize);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                close = true;
            }
            if k.eq_ignore_ascii_case("content-length") {
                len = v.parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok(Some(close))
}
