//! A Kubernetes API server stand-in over real TCP, HTTPS as a kind cluster's API server serves it,
//! for code that needs more than a mock transport. Each server makes its own PKI at start, as
//! kubeadm does: a CA, a serving certificate for 127.0.0.1 and localhost, and an admin's client
//! certificate; the TLS handshake requires a client certificate signed by that CA. kube-rs
//! reaches it through the kubeconfig kind writes (CA, client certificate and key), and exec speaks
//! the real websocket protocol: `v5.channel.k8s.io` when the client offers it (a 1.30+ API
//! server picks it; kube-rs offers it first), else `v4.channel.k8s.io`; one channel byte per
//! frame, stdout 1, stderr 2, the final `Status` on 3 (v5 adds 255, the client's close signal
//! for a stream, which kube-rs sends only when it writes stdin).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::SinkExt;
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key, protocol::Role};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    /// The client certificate (DER) the connection was made with.
    pub client_cert: Option<Vec<u8>>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Every value of a query parameter, in order (`command` repeats).
    pub fn params(&self, key: &str) -> Vec<String> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| decode(v))
            .collect()
    }
}

fn decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(h, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How to answer.
pub enum Reply {
    Json(u16, Value),
    /// An exec: these frames, then the final status, then close.
    Exec {
        stdout: String,
        stderr: String,
        status: Value,
    },
    /// An exec that streams: each line received is sent at once as a stdout frame (with its
    /// `\n`); once the sender is dropped, `status`, then close. When the client closes the
    /// websocket (or drops the connection) first, `closed` counts it.
    ExecStream {
        lines: tokio::sync::mpsc::UnboundedReceiver<String>,
        status: Value,
        closed: Arc<AtomicUsize>,
    },
    /// An exec run for real on this host: `argv` as a child process (no shell, no stdin), each
    /// line of its standard output sent at once as a stdout frame (with its `\n`), its standard
    /// error once it ends, then its exit status (an `ExitCode` cause when not 0; 127 when it
    /// cannot start, as a container runtime says). When the client closes the websocket (or
    /// drops the connection) first, the process is killed.
    Run {
        argv: Vec<String>,
    },
    /// `reply` played while holding `lock`: replies sharing a lock are played one at a time
    /// (e.g. execs run for real, so concurrent curls do not interleave their connections).
    Locked {
        lock: Arc<tokio::sync::Mutex<()>>,
        reply: Box<Reply>,
    },
    /// Accept and never answer (a stalled API server).
    Hang,
    /// `reply` after `wait`; `done` (a guard counting what is in flight) is dropped once `reply`
    /// has been played.
    Later {
        wait: std::time::Duration,
        reply: Box<Reply>,
        done: Option<Box<dyn std::any::Any + Send>>,
    },
    /// A watch: the response starts at once; `event` (a watch event) is sent when `after` is
    /// notified, then the watch stays open.
    Watch {
        after: Arc<tokio::sync::Notify>,
        event: Value,
    },
}

pub struct ApiServer {
    pub addr: std::net::SocketAddr,
    pub seen: Arc<Mutex<Vec<Req>>>,
    /// The exec subprotocol each exec negotiated, in order.
    pub negotiated: Arc<Mutex<Vec<String>>>,
    /// The TLS handshakes the server refused, each with rustls's reason, in order.
    pub refused: Arc<Mutex<Vec<String>>>,
    pub pki: Pki,
    task: tokio::task::JoinHandle<()>,
}

/// A cluster's PKI as kubeadm makes it, PEM: the cluster CA, and the admin's client certificate
/// (CN kubernetes-admin, O kubeadm:cluster-admins) and key signed by it; the API server's
/// serving certificate (SANs 127.0.0.1 and localhost, signed by the CA) stays inside.
pub struct Pki {
    pub ca: String,
    pub client_cert: String,
    pub client_key: String,
    server_cert: String,
    server_key: String,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, IsCa,
            Issuer, KeyPair, KeyUsagePurpose as Ku,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "kubernetes");
        ca.key_usages = vec![Ku::KeyCertSign, Ku::DigitalSignature, Ku::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |sans: Vec<String>, cn: &str, org: Option<&str>, eku: Eku| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            if let Some(o) = org {
                p.distinguished_name.push(DnType::OrganizationName, o);
            }
            p.key_usages = vec![Ku::DigitalSignature, Ku::KeyEncipherment];
            p.extended_key_usages = vec![eku];
            (
                p.signed_by(&key, &issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        };
        let sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let (server_cert, server_key) = leaf(sans, "kube-apiserver", None, Eku::ServerAuth);
        let admin = Some("kubeadm:cluster-admins");
        let (client_cert, client_key) = leaf(vec![], "kubernetes-admin", admin, Eku::ClientAuth);
        Pki {
            ca: ca_cert.pem(),
            client_cert,
            client_key,
            server_cert,
            server_key,
        }
    }

    /// The admin's client certificate, DER.
    pub fn client_der(&self) -> Vec<u8> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        CertificateDer::from_pem_slice(self.client_cert.as_bytes())
            .unwrap()
            .to_vec()
    }

    /// The API server's TLS: its serving certificate, and a client certificate signed by the CA
    /// required of every client (the handshake fails without one).
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let chain = vec![CertificateDer::from_pem_slice(self.server_cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

/// PEM as a kubeconfig's `*-data` fields carry it: base64, one line.
pub fn data(pem: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(pem)
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    /// Serve every connection with `answer` (on the current tokio runtime), exec over v5 or v4
    /// as a 1.30+ API server does.
    pub async fn start(answer: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> ApiServer {
        ApiServer::start_with(&[V5, V4], answer).await
    }

    /// As [`ApiServer::start`], exec accepting only the subprotocols `accepted` (an older API
    /// server: `&[V4]`).
    pub async fn start_with(
        accepted: &'static [&'static str],
        answer: impl Fn(&Req) -> Reply + Send + Sync + 'static,
    ) -> ApiServer {
        super::time_limit();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let negotiated = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let pki = Pki::new();
        let tls = tokio_rustls::TlsAcceptor::from(pki.server_config());
        let conn = Conn {
            log: seen.clone(),
            negotiated: negotiated.clone(),
            accepted,
            answer: Arc::new(answer),
        };
        let refusals = refused.clone();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (conn, tls, refusals) = (conn.clone(), tls.clone(), refusals.clone());
                tokio::spawn(async move {
                    match tls.accept(s).await {
                        Ok(s) => {
                            let peer = s.get_ref().1.peer_certificates();
                            let cert = peer.and_then(|c| c.first()).map(|c| c.to_vec());
                            let _ = serve(s, cert, &conn).await;
                        }
                        Err(e) => refusals.lock().unwrap().push(e.to_string()),
                    }
                });
            }
        });
        ApiServer {
            addr,
            seen,
            negotiated,
            refused,
            pki,
            task,
        }
    }

    /// The kubeconfig kind writes for cluster `name` whose API server this is: context, cluster
    /// and user `kind-NAME`, `https://127.0.0.1:PORT`, the CA, and the admin's client
    /// certificate and key (kind's layout: keys sorted, lists unindented).
    pub fn kubeconfig(&self, name: &str) -> String {
        let (ca, cert, key) = (
            data(&self.pki.ca),
            data(&self.pki.client_cert),
            data(&self.pki.client_key),
        );
        format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://{}\n  name: kind-{name}\ncontexts:\n- context:\n    cluster: kind-{name}\n    user: kind-{name}\n  name: kind-{name}\ncurrent-context: kind-{name}\nkind: Config\npreferences: {{}}\nusers:\n- name: kind-{name}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
            self.addr
        )
    }

    pub fn requests(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

/// The exec subprotocols: v5 adds the close signal (channel 255).
pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

/// What every connection of one server shares.
#[derive(Clone)]
struct Conn {
    log: Arc<Mutex<Vec<Req>>>,
    negotiated: Arc<Mutex<Vec<String>>>,
    accepted: &'static [&'static str],
    answer: Arc<dyn Fn(&Req) -> Reply + Send + Sync>,
}

impl Conn {
    /// The first subprotocol the client offers that this server accepts (the API server's
    /// handshake goes by the client's order), recorded.
    fn negotiate(&self, req: &Req) -> Option<&'static str> {
        let offered = req.header("sec-websocket-protocol").unwrap_or("");
        let p = offered
            .split(',')
            .map(str::trim)
            .find_map(|o| self.accepted.iter().find(|a| **a == o).copied())?;
        self.negotiated.lock().unwrap().push(p.to_string());
        Some(p)
    }
}

/// Serve one connection: requests one after another (keep-alive) until it closes or upgrades.
/// `cert` is the client certificate the connection was made with.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    cert: Option<Vec<u8>>,
    conn: &Conn,
) -> std::io::Result<()> {
    let mut r = BufReader::new(s);
    loop {
        let Some((mut req, key)) = read_request(&mut r).await? else {
            return Ok(());
        };
        req.client_cert = cert.clone();
        conn.log.lock().unwrap().push(req.clone());
        let mut reply = (conn.answer)(&req);
        let mut _done = None;
        let mut _held = None;
        while let Reply::Locked { lock, reply: r } = reply {
            _held = Some(lock.lock_owned().await);
            reply = *r;
        }
        while let Reply::Later {
            wait,
            reply: r,
            done,
        } = reply
        {
            tokio::time::sleep(wait).await;
            _done = done;
            reply = *r;
        }
        match reply {
            Reply::Json(code, v) => {
                let body = serde_json::to_vec(&v).unwrap();
                let head = format!(
                    "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                r.get_mut().write_all(head.as_bytes()).await?;
                r.get_mut().write_all(&body).await?;
                r.get_mut().flush().await?;
            }
            Reply::Exec {
                stdout,
                stderr,
                status,
            } => {
                let out = Played {
                    stdout,
                    stderr,
                    status,
                };
                let Some(protocol) = conn.negotiate(&req) else {
                    return refuse_upgrade(r.get_mut()).await;
                };
                return exec(r.into_inner(), key.unwrap_or_default(), protocol, out).await;
            }
            Reply::ExecStream {
                lines,
                status,
                closed,
            } => {
                let Some(protocol) = conn.negotiate(&req) else {
                    return refuse_upgrade(r.get_mut()).await;
                };
                let ws = upgrade(r.into_inner(), key.unwrap_or_default(), protocol).await?;
                return stream(ws, lines, status, closed).await;
            }
            Reply::Run { argv } => {
                let Some(protocol) = conn.negotiate(&req) else {
                    return refuse_upgrade(r.get_mut()).await;
                };
                let ws = upgrade(r.into_inner(), key.unwrap_or_default(), protocol).await?;
                return run(ws, argv).await;
            }
            Reply::Locked { .. } => unreachable!("played above"),
            Reply::Hang => {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                return Ok(());
            }
            Reply::Later { .. } => unreachable!("played above"),
            Reply::Watch { after, event } => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                r.get_mut().write_all(head.as_bytes()).await?;
                r.get_mut().flush().await?;
                after.notified().await;
                let line = format!("{}\n", serde_json::to_string(&event).unwrap());
                let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                r.get_mut().write_all(chunk.as_bytes()).await?;
                r.get_mut().flush().await?;
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                return Ok(());
            }
        }
    }
}

/// The request head and body; `None` at the end of the connection. Also the websocket key.
async fn read_request(
    r: &mut (impl AsyncBufRead + Unpin),
) -> std::io::Result<Option<(Req, Option<String>)>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).await?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let len: usize = get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    let key = get("sec-websocket-key");
    let body = serde_json::from_slice(&body)
        .or_else(|_| {
            // Server-side apply sends YAML; kube-rs writes it as JSON all the same.
            Ok::<Value, ()>(Value::String(String::from_utf8_lossy(&body).into_owned()))
        })
        .unwrap();
    let req = Req {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
        client_cert: None,
    };
    Ok(Some((req, key)))
}

/// No exec subprotocol in common: the API server answers 400 and does not upgrade.
async fn refuse_upgrade(s: &mut (impl AsyncWrite + Unpin)) -> std::io::Result<()> {
    let body = serde_json::to_vec(&status(
        400,
        "BadRequest",
        "unable to upgrade: unable to negotiate protocol: client supports none of the server's subprotocols",
    ))
    .unwrap();
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(&body).await?;
    s.flush().await
}

/// An exec's output as the stand-in plays it.
struct Played {
    stdout: String,
    stderr: String,
    status: Value,
}

/// Upgrade to a websocket with `protocol` and play an exec's output.
async fn exec(
    s: impl AsyncRead + AsyncWrite + Unpin,
    key: String,
    protocol: &str,
    out: Played,
) -> std::io::Result<()> {
    let Played {
        stdout,
        stderr,
        status,
    } = out;
    let mut ws = upgrade(s, key, protocol).await?;
    if !stdout.is_empty() {
        ws.send(frame(1, stdout.as_bytes())).await.map_err(io)?;
    }
    if !stderr.is_empty() {
        ws.send(frame(2, stderr.as_bytes())).await.map_err(io)?;
    }
    let st = serde_json::to_vec(&status).unwrap();
    ws.send(frame(3, &st)).await.map_err(io)?;
    ws.close(None).await.map_err(io)?;
    Ok(())
}

/// One exec frame: the channel byte, then the data.
fn frame(ch: u8, data: &[u8]) -> Message {
    let mut v = vec![ch];
    v.extend_from_slice(data);
    Message::binary(v)
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{e}"))
}

/// Switch the connection to a websocket with `protocol`.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    key: String,
    protocol: &str,
) -> std::io::Result<WebSocketStream<S>> {
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\nsec-websocket-protocol: {protocol}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    s.write_all(head.as_bytes()).await?;
    s.flush().await?;
    Ok(WebSocketStream::from_raw_socket(s, Role::Server, None).await)
}

/// Play a streaming exec: each line as it arrives, until the sender is dropped (then `status`
/// and close) or the client closes the websocket (counted in `closed`).
async fn stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    mut lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    status: Value,
    closed: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    use futures::StreamExt;
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(l) => {
                    let sent = ws.send(frame(1, format!("{l}\n").as_bytes())).await;
                    if sent.is_err() {
                        closed.fetch_add(1, Ordering::SeqCst);
                        return Ok(());
                    }
                }
                None => break,
            },
            m = ws.next() => match m {
                // The client's close (or the connection gone).
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {
                    closed.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
                // kube-rs's frames (v5's close of stdin, pings): nothing to play.
                Some(Ok(_)) => {}
            },
        }
    }
    let st = serde_json::to_vec(&status).unwrap();
    ws.send(frame(3, &st)).await.map_err(io)?;
    ws.close(None).await.map_err(io)?;
    Ok(())
}

/// An exec's final status for exit code `code` (Success for 0).
pub fn exit_status(code: i32) -> Value {
    if code == 0 {
        return json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("command terminated with non-zero exit code: exit code {code}"),
           "reason": "NonZeroExitCode",
           "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
}

/// Play [`Reply::Run`]: run `argv` here, stream its standard output line by line, then its
/// standard error and exit status; kill it when the client goes first.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    argv: Vec<String>,
) -> std::io::Result<()> {
    use futures::StreamExt;
    use std::process::Stdio;
    let spawned = tokio::process::Command::new(argv.first().map_or("", String::as_str))
        .args(argv.iter().skip(1))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("exec: {:?}: {e}", argv.first());
            ws.send(frame(2, msg.as_bytes())).await.map_err(io)?;
            let st = serde_json::to_vec(&exit_status(127)).unwrap();
            ws.send(frame(3, &st)).await.map_err(io)?;
            return ws.close(None).await.map_err(io);
        }
    };
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err_pipe = child.stderr.take().unwrap();
    let err = tokio::spawn(async move {
        let mut e = String::new();
        let _ = err_pipe.read_to_string(&mut e).await;
        e
    });
    loop {
        tokio::select! {
            line = out.next_line() => match line? {
                Some(l) => ws.send(frame(1, format!("{l}\n").as_bytes())).await.map_err(io)?,
                None => break,
            },
            m = ws.next() => match m {
                // The client's close (or the connection gone): the child is killed on drop.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
    let code = child.wait().await?.code().unwrap_or(-1);
    let stderr = err.await.unwrap_or_default();
    if !stderr.is_empty() {
        ws.send(frame(2, stderr.as_bytes())).await.map_err(io)?;
    }
    let st = serde_json::to_vec(&exit_status(code)).unwrap();
    ws.send(frame(3, &st)).await.map_err(io)?;
    ws.close(None).await.map_err(io)?;
    Ok(())
}

/// Kinds no namespace holds.
pub const CLUSTER_SCOPED: [&str; 6] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingWebhookConfiguration",
    "IngressClass",
];

pub fn plural(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
}

/// Discovery answers (path, APIResourceList) for every kind of `yaml`, from the objects
/// themselves.
pub fn discovery(yaml: &str) -> Vec<(String, Value)> {
    let mut by_gv: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for o in kindred::backend::kube::parse_objects(yaml, "test").unwrap() {
        let t = o.types.unwrap();
        let r = json!({"name": plural(&t.kind), "singularName": t.kind.to_lowercase(),
                       "namespaced": !CLUSTER_SCOPED.contains(&t.kind.as_str()), "kind": t.kind,
                       "verbs": ["create","delete","get","list","patch","update","watch"]});
        let list = by_gv.entry(t.api_version).or_default();
        if !list.contains(&r) {
            list.push(r);
        }
    }
    by_gv
        .into_iter()
        .map(|(gv, resources)| {
            let path = if gv.contains('/') {
                format!("/apis/{gv}")
            } else {
                format!("/api/{gv}")
            };
            let list = json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                              "resources": resources});
            (path, list)
        })
        .collect()
}

fn pod(name: &str, node: &str, host: bool, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": "7",
                     "labels": {"kindred.io/test": "true"}},
        "spec": {"nodeName": node, "hostNetwork": host,
                 "containers": [{"name": "netshoot", "image": "nicolaka/netshoot:v0.13"}]},
        "status": {"phase": "Running", "podIP": ip}
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "10"}, "items": items})
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
           "reason": reason, "message": message})
}

/// One kind cluster's API server as kindred sees it after a deploy: it knows every kind of
/// `yaml`, MetalLB's controller is ready, the pool is refused `refusals` times (MetalLB's webhook
/// not up yet), the test pods run (`pods` of the built-in workloads), the echo Service has
/// `lb_ip` and a ready endpoint, and an exec is a curl that gets HTTP 200, or times out from the
/// pods `timeouts` names.
#[derive(Default)]
pub struct Cluster {
    pub name: String,
    pub yaml: String,
    pub refusals: usize,
    pub lb_ip: Option<String>,
    /// Pods whose curl times out (exit 28): `POD` to every target, `POD@ADDR` to `ADDR` only.
    pub timeouts: Vec<String>,
    /// kube-system/kube-proxy, when the cluster has one to swap.
    pub proxy: Option<Arc<ProxyDs>>,
    /// When set, a watch of the echo Service's EndpointSlices gets a MODIFIED event once this
    /// is notified.
    pub endpoints_change: Option<Arc<tokio::sync::Notify>>,
    /// When set, asked at each exec whether the curl from this pod times out now (beside
    /// `timeouts`): the answer follows what the cluster runs at that moment
    /// (see `kuberepo::Running`).
    pub decide: Option<Decide>,
    /// Address rewrites (`from`, `to`), e.g. the LB IP:port to an [`super::echo::Echo`]'s
    /// 127.0.0.1:port. When set, an exec that does not time out is run for real on this host
    /// ([`Reply::Run`]) with each `from` in its argv replaced by its `to`: kindred's own curl
    /// argv, against a real server.
    pub route: Vec<(String, String)>,
    /// Ready endpoints in the echo Service's EndpointSlice (1 when not set).
    pub endpoints: Option<u32>,
    /// When set, the execs run for real (`route`) hold this lock: one at a time, also across
    /// clusters sharing it.
    pub serial: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// The tries a curl argv asks for: its URLs.
pub fn tries(argv: &[String]) -> usize {
    argv.iter().filter(|a| a.contains("://")).count().max(1)
}

/// `argv` with each `from` of `route` replaced by its `to`.
pub fn routed(argv: &[String], route: &[(String, String)]) -> Vec<String> {
    argv.iter()
        .map(|a| {
            route
                .iter()
                .fold(a.clone(), |a, (from, to)| a.replace(from.as_str(), to))
        })
        .collect()
}

/// Whether a curl from a pod (its name) times out now.
pub type Decide = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Called with the new image when a rollout completes.
pub type OnRollout = Box<dyn Fn(&str) + Send + Sync>;

/// The kube-proxy DaemonSet of a three-node cluster: a PATCH that changes its image starts a
/// rollout, which completes at the next read when `rolls` (calling `on_rollout` first, e.g. to
/// put the new kube-proxy's rules on the nodes), and otherwise stays at one pod unavailable
/// while the pods wait with `ErrImageNeverPull`.
pub struct ProxyDs {
    pub image: Mutex<String>,
    pub rolls: bool,
    pub on_rollout: Option<OnRollout>,
    /// (generation, rollout pending).
    state: Mutex<(i64, bool)>,
}

impl ProxyDs {
    pub fn new(image: &str, rolls: bool) -> ProxyDs {
        ProxyDs {
            image: Mutex::new(image.into()),
            rolls,
            on_rollout: None,
            state: Mutex::new((1, false)),
        }
    }

    fn object(&self) -> Value {
        let mut st = self.state.lock().unwrap();
        let image = self.image.lock().unwrap().clone();
        if st.1 && self.rolls {
            if let Some(f) = &self.on_rollout {
                f(&image);
            }
            st.1 = false;
        }
        let (updated, available, unavailable) = if st.1 { (1, 2, 1) } else { (3, 3, 0) };
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "kube-proxy", "namespace": "kube-system", "generation": st.0},
            "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                     "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}},
                                  "spec": {"containers": [{"name": "kube-proxy", "image": image,
                                      "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf"]}]}}},
            "status": {"observedGeneration": st.0, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                       "numberMisscheduled": 0, "numberReady": available, "updatedNumberScheduled": updated,
                       "numberAvailable": available, "numberUnavailable": unavailable}
        })
    }

    /// Answer a request about kube-proxy, if it is one.
    pub fn answer(&self, r: &Req) -> Option<Reply> {
        const DS: &str = "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy";
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", DS) => Some(Reply::Json(200, self.object())),
            ("PATCH", DS) => {
                let c = &r.body["spec"]["template"]["spec"]["containers"][0];
                let new = c["image"].as_str().unwrap_or_default().to_string();
                let mut img = self.image.lock().unwrap();
                if *img != new {
                    *img = new;
                    let mut st = self.state.lock().unwrap();
                    *st = (st.0 + 1, true);
                }
                drop(img);
                Some(Reply::Json(200, self.object()))
            }
            ("GET", "/api/v1/namespaces/kube-system/pods") => {
                let waiting = self.state.lock().unwrap().1;
                let reason = if waiting { "ErrImageNeverPull" } else { "" };
                let p = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "kube-proxy-x7k2p", "namespace": "kube-system"},
                    "spec": {"containers": [{"name": "kube-proxy"}]},
                    "status": {"phase": "Pending", "containerStatuses": [{"name": "kube-proxy", "image": "", "imageID": "",
                        "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason}}}]}});
                Some(Reply::Json(
                    200,
                    list("PodList", if waiting { vec![p] } else { vec![] }),
                ))
            }
            _ => None,
        }
    }
}

impl Cluster {
    /// The cluster's test pods (the built-in workloads: netshoot on the workers' host network,
    /// overlay pods, the echo server on worker2).
    fn pods(&self) -> Vec<Value> {
        let c = &self.name;
        vec![
            pod(
                &format!("echo-{c}-worker2"),
                &format!("{c}-worker2"),
                false,
                "10.244.2.7",
            ),
            pod(
                &format!("netshoot-{c}-worker"),
                &format!("{c}-worker"),
                true,
                "172.18.0.3",
            ),
            pod(
                &format!("netshoot-{c}-worker2"),
                &format!("{c}-worker2"),
                true,
                "172.18.0.4",
            ),
            pod(
                &format!("overlay-{c}-worker"),
                &format!("{c}-worker"),
                false,
                "10.244.1.5",
            ),
            pod(
                &format!("overlay-{c}-worker2"),
                &format!("{c}-worker2"),
                false,
                "10.244.2.5",
            ),
        ]
    }

    /// The echo Service's EndpointSlices: `endpoints` ready endpoints (1 unless set), and one
    /// that is not ready (never counted).
    fn slices(&self) -> Value {
        let mut endpoints: Vec<Value> = (0..self.endpoints.unwrap_or(1))
            .map(|i| json!({"addresses": [format!("10.244.2.{}", 7 + i)], "conditions": {"ready": true}}))
            .collect();
        endpoints.push(json!({"addresses": ["10.244.1.9"], "conditions": {"ready": false}}));
        json!({"kind": "EndpointSliceList", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"resourceVersion": "11"},
            "items": [{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": "echo-x", "namespace": "default",
                                    "labels": {"kubernetes.io/service-name": "echo"}},
                       "addressType": "IPv4", "endpoints": endpoints}]})
    }

    fn service(&self) -> Value {
        let ingress: Vec<Value> = self.lb_ip.iter().map(|ip| json!({"ip": ip})).collect();
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "echo", "namespace": "default", "resourceVersion": "9"},
               "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                        "ports": [{"port": 8080, "targetPort": 8080, "protocol": "TCP"}]},
               "status": {"loadBalancer": {"ingress": ingress}}})
    }

    /// Serve it; also the count of pool applies refused so far.
    pub async fn serve(self) -> (ApiServer, Arc<AtomicUsize>) {
        let discovery = discovery(&self.yaml);
        let refused = Arc::new(AtomicUsize::new(0));
        let count = refused.clone();
        let (pods, service) = (self.pods(), self.service());
        let slice_list = self.slices();
        let server = ApiServer::start(move |r: &Req| {
            let slices = r.path == "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
            if let Some(n) = &self.endpoints_change
                && slices
                && r.query.contains("watch=true")
            {
                return Reply::Watch {
                    after: n.clone(),
                    event: json!({"type": "MODIFIED", "object": {
                        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"name": "echo-x", "namespace": "default", "resourceVersion": "12",
                                     "labels": {"kubernetes.io/service-name": "echo"}},
                        "addressType": "IPv4",
                        "endpoints": [{"addresses": ["10.244.2.8"], "conditions": {"ready": true}}]}}),
                };
            }
            if r.query.contains("watch=true") {
                return Reply::Hang;
            }
            if let Some(a) = self.proxy.as_ref().and_then(|p| p.answer(r)) {
                return a;
            }
            if let Some((_, d)) = discovery.iter().find(|(p, _)| *p == r.path) {
                return Reply::Json(200, d.clone());
            }
            let pool = r.path.contains("/ipaddresspools/");
            match (r.method.as_str(), r.path.as_str()) {
                ("PATCH", _) if pool && count.load(Ordering::SeqCst) < self.refusals => {
                    count.fetch_add(1, Ordering::SeqCst);
                    Reply::Json(500, status(500, "InternalError",
                        "Internal error occurred: failed calling webhook \"ipaddresspoolvalidationwebhook.metallb.io\": connect: connection refused"))
                }
                ("PATCH", _) => Reply::Json(200, r.body.clone()),
                ("GET", "/apis/apps/v1/namespaces/metallb-system/deployments/controller") => {
                    Reply::Json(200, json!({
                        "apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "controller", "namespace": "metallb-system"},
                        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "metallb"}},
                                 "template": {"metadata": {"labels": {"app": "metallb"}},
                                              "spec": {"containers": [{"name": "controller"}]}}},
                        "status": {"replicas": 1, "readyReplicas": 1}}))
                }
                ("GET", "/api/v1/namespaces/default/pods") => Reply::Json(200, list("PodList", pods.clone())),
                ("GET", "/api/v1/namespaces/default/services") => {
                    Reply::Json(200, list("ServiceList", vec![service.clone()]))
                }
                ("GET", "/api/v1/namespaces/default/services/echo") => Reply::Json(200, service.clone()),
                ("GET", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices") => {
                    Reply::Json(200, slice_list.clone())
                }
                (_, p) if p.ends_with("/exec") => {
                    let pod = p.split('/').nth(6).unwrap_or("");
                    let query = r.query.replace("%3A", ":").replace("%3a", ":");
                    let times_out = |t: &String| match t.split_once('@') {
                        Some((p, addr)) => p == pod && query.contains(addr),
                        None => t == pod,
                    };
                    if self.timeouts.iter().any(times_out)
                        || self.decide.as_ref().is_some_and(|d| d(pod))
                    {
                        let n = tries(&r.params("command"));
                        Reply::Exec {
                            stdout: "\n@kindred-try@ 0 28 000 0.000000 2.001000\n".repeat(n),
                            stderr: "curl: (28) Connection timed out after 2001 milliseconds\n".repeat(n),
                            status: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "reason": "NonZeroExitCode",
                                "details": {"causes": [{"reason": "ExitCode", "message": "28"}]}}),
                        }
                    } else if !self.route.is_empty() {
                        let run = Reply::Run {
                            argv: routed(&r.params("command"), &self.route),
                        };
                        match &self.serial {
                            Some(lock) => Reply::Locked { lock: lock.clone(), reply: Box::new(run) },
                            None => run,
                        }
                    } else {
                        let n = tries(&r.params("command"));
                        let answer = format!("echo-{}-worker2\n@kindred-try@ 0 0 200 0.001000 0.003000\n", self.name);
                        Reply::Exec {
                            stdout: answer.repeat(n),
                            stderr: String::new(),
                            status: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                        }
                    }
                }
                _ => Reply::Json(404, status(404, "NotFound", &format!("{} not found", r.path))),
            }
        })
        .await;
        (server, refused)
    }
}
