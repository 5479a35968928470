//! The `GET /metrics` endpoint: a listening thread (`rvs-metrics`) and a
//! thread per scrape, at most [`MAX_SCRAPES`] at once (more are answered
//! 503 at once), each bounded in time both ways, so that a scraper that
//! never sends its request or never reads the answer holds only its own
//! thread, and only for a while. Anything but `GET /metrics` gets a proper
//! HTTP error. The scrape asks the control thread for a [`Frame`] (answered
//! within its next round, tens of milliseconds) and streams the encoding to
//! the socket as it goes (no Content-Length: the body ends with the
//! connection).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{write, Frame, Sources};

/// Scrapes served at once, at most.
pub const MAX_SCRAPES: usize = 16;
/// Longest request head read.
const MAX_REQUEST: usize = 8192;
/// How long a scraper may take to send its request, or to read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a scrape waits for the control thread.
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// A scrape's request for a frame: where to send it.
pub type FrameRequest = SyncSender<Frame>;

/// The endpoint, from the control thread's side: requests for frames to
/// answer with [`Frame`]s.
pub struct Endpoint {
    pub requests: Receiver<FrameRequest>,
    _thread: JoinHandle<()>,
}

/// Serves `/metrics` on `listener` from now on.
pub fn start(listener: TcpListener, sources: Arc<Sources>) -> std::io::Result<Endpoint> {
    let (requests_tx, requests) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("rvs-metrics".to_owned())
        .spawn(move || accept(listener, sources, requests_tx))?;
    Ok(Endpoint {
        requests,
        _thread: thread,
    })
}

fn accept(listener: TcpListener, sources: Arc<Sources>, requests: Sender<FrameRequest>) {
    let running = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else {
            // EMFILE and the like: do not spin.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if running.load(Relaxed) >= MAX_SCRAPES {
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                b"too many scrapes at once\n",
            );
            continue;
        }
        running.fetch_add(1, Relaxed);
        let (sources, requests, done) =
            (Arc::clone(&sources), requests.clone(), Arc::clone(&running));
        let spawned = std::thread::Builder::new()
            .name("rvs-scrape".to_owned())
            .spawn(move || {
                serve(stream, &sources, &requests);
                done.fetch_sub(1, Relaxed);
            });
        if spawned.is_err() {
            running.fetch_sub(1, Relaxed);
        }
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
}

/// One scrape: the request read and judged, the answer written.
fn serve(mut stream: TcpStream, sources: &Arc<Sources>, requests: &Sender<FrameRequest>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (method, path, openmetrics) = loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let accept = request
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("accept"))
                    .any(|h| {
                        String::from_utf8_lossy(h.value).contains("application/openmetrics-text")
                    });
                break (
                    request.method.unwrap_or("").to_owned(),
                    request.path.unwrap_or("").to_owned(),
                    accept,
                );
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_REQUEST => continue,
            Ok(httparse::Status::Partial) => {
                respond(
                    &mut stream,
                    "431 Request Header Fields Too Large",
                    "text/plain",
                    b"request too large\n",
                );
                return;
            }
            Err(_) => {
                respond(
                    &mut stream,
                    "400 Bad Request",
                    "text/plain",
                    b"not an HTTP request\n",
                );
                return;
            }
        }
    };
    let route = path.split('?').next().unwrap_or("");
    if route != "/metrics" {
        respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"rvsd serves /metrics only\n",
        );
        return;
    }
    if method != "GET" && method != "HEAD" {
        let head = "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n\
                    Content-Length: 0\r\nConnection: close\r\n\r\n";
        let _ = stream.write_all(head.as_bytes());
        return;
    }
    let (reply, frame) = mpsc::sync_channel(1);
    let frame = requests
        .send(reply)
        .ok()
        .and_then(|()| frame.recv_timeout(FRAME_TIMEOUT).ok());
    let Some(frame) = frame else {
        respond(
            &mut stream,
            "503 Service Unavailable",
            "text/plain",
            b"rvsd is not answering\n",
        );
        return;
    };
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE
    };
    // No Content-Length: the body streams as it is encoded and ends with
    // the connection.
    let head =
        format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() || method == "HEAD" {
        return;
    }
    let mut sink = Sink(std::io::BufWriter::with_capacity(64 * 1024, &stream));
    if write(sources, frame, openmetrics, &mut sink).is_ok() {
        let _ = sink.0.flush();
    }
}

/// The scrape's socket as the encoder's output; a write that fails (the
/// scraper gone, or not reading within the timeout) ends the encoding.
struct Sink<'a>(std::io::BufWriter<&'a TcpStream>);

impl std::fmt::Write for Sink<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0
            .write_all(text.as_bytes())
            .map_err(|_| std::fmt::Error)
    }
}
