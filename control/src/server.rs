//! The control socket server that rvsd's control thread polls.
//!
//! One thread, no async runtime: [`Server::poll`] waits (at most the given
//! time) for socket events with `poll(2)`, accepts, reads, dispatches each
//! complete request line to a [`Handler`] and writes responses back, all on
//! non-blocking sockets. Promises:
//!
//! - No client can stall the loop or another client: reads and writes never
//!   block, a client gets at most [`Limits::requests_per_round`] requests
//!   handled per call, and every per-client buffer is bounded.
//! - A request line longer than [`Limits::max_line`] gets an error response
//!   and the connection is closed after it.
//! - Garbage (non-JSON, wrong version, unknown command) gets a precise error
//!   response and the connection stays open.
//! - A client stops being read while [`Limits::output_pause`] bytes of its
//!   responses are unsent (so a client that never reads cannot make rvsd
//!   buffer without bound); a client that neither completes a request nor
//!   takes any output for [`Limits::idle_timeout`] is closed.
//! - Peers are checked with `SO_PEERCRED`: root, the daemon's own user, or
//!   the configured group (the peer's primary group; supplementary groups are
//!   not visible through `SO_PEERCRED`). Others get ipvsadm's "Permission
//!   denied (you must be root)" and are closed.
//! - At most [`Limits::max_clients`] clients at once; the next is told so and
//!   closed.
//! - A [`Handler`] may answer later ([`Reply::Later`]), for work it does off
//!   this thread (parsing and validating a large configuration): that
//!   client's later requests wait for the answer, which [`Server::complete`]
//!   delivers, so its responses keep request order; every other client is
//!   served meanwhile, and a client waiting for an answer is never closed as
//!   idle.

use crate::proto::{self, Command, Response};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the daemon does with a decoded command.
pub trait Handler {
    /// Carries out `cmd`, or starts it (see [`Reply`]).
    fn handle(&mut self, cmd: Command) -> Reply;
}

/// A handler's answer to a command.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The response now: `Ok` is its `result` (see [`Command`] for each
    /// command's result shape), `Err` its `error`.
    Now(Result<Value, String>),
    /// The response comes later, through [`Server::complete`] with this
    /// ticket (the handler's own number, unique among those pending).
    Later(Ticket),
}

/// Names a response a [`Handler`] gives later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);

/// A closure answers at once.
impl<F: FnMut(Command) -> Result<Value, String>> Handler for F {
    fn handle(&mut self, cmd: Command) -> Reply {
        Reply::Now(self(cmd))
    }
}

/// Bounds of the server; [`Limits::default`] is what rvsd uses.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_clients: usize,
    /// Longest request line, newline included.
    pub max_line: usize,
    /// Unsent response bytes at which a client is no longer read.
    pub output_pause: usize,
    /// Largest single response; a larger result is replaced by an error.
    pub max_response: usize,
    /// A client with no complete request and no output taken for this long
    /// is closed.
    pub idle_timeout: Duration,
    /// Requests handled per client per [`Server::poll`] call.
    pub requests_per_round: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clients: 64,
            max_line: proto::MAX_REQUEST,
            output_pause: 256 * 1024,
            max_response: 64 * 1024 * 1024,
            idle_timeout: Duration::from_secs(30),
            requests_per_round: 16,
        }
    }
}

/// Who may talk to the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The daemon's own uid (it may always talk to itself).
    pub owner_uid: u32,
    pub allowed_gid: Option<u32>,
}

impl Access {
    /// Whether a peer with this uid and primary gid may send commands.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == 0 || uid == self.owner_uid || self.allowed_gid == Some(gid)
    }
}

/// Why [`Server::bind`] failed; the message names the path and the fix.
#[derive(Debug)]
pub struct BindError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "control socket {}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for BindError {}

/// What one [`Server::poll`] call did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollReport {
    pub accepted: usize,
    pub refused: usize,
    pub requests: usize,
    /// Of `requests`, those answered with an error so far.
    pub errors: usize,
    pub closed: usize,
}

/// What the socket served since it was bound, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Request lines answered (or being answered).
    pub requests: u64,
    /// Of those, the ones answered with an error: refused edits, unknown
    /// commands, malformed or oversized lines.
    pub errors: u64,
    /// Clients refused (permission, too many clients).
    pub refused: u64,
}

/// The listening control socket and its clients.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    access: Access,
    limits: Limits,
    clients: Vec<Client>,
    /// Device and inode of the socket file we created, to recognise it.
    file_id: (u64, u64),
    served: Served,
}

struct Client {
    stream: UnixStream,
    /// A request answered later: its ticket and id. Nothing more of the
    /// client is served until [`Server::complete`] answers it.
    waiting: Option<(Ticket, u64)>,
    input: Vec<u8>,
    /// Bytes of `input` already searched for a newline.
    scanned: usize,
    output: VecDeque<u8>,
    last_activity: Instant,
    /// The peer finished sending: answer its complete lines, then close.
    eof: bool,
    /// Close once `output` is sent, ignoring further input (oversized line).
    closing: bool,
    /// `closing`, output sent and our side shut down: input is read and
    /// discarded until the peer's EOF, because closing a Unix socket with
    /// unread input resets it and the peer would lose our last answer.
    draining: bool,
    dead: bool,
}

impl Server {
    /// Binds the control socket at `path` with permissions `mode` (0600 for
    /// root only, 0660 with `allowed_gid`, whose group the socket then
    /// gets).
    ///
    /// A socket file left by a dead daemon is removed; if a live server
    /// answers on it, or `path` is something other than a socket, binding is
    /// refused and nothing is touched.
    pub fn bind(path: &Path, mode: u32, allowed_gid: Option<u32>) -> Result<Server, BindError> {
        Server::bind_with(path, mode, allowed_gid, Limits::default())
    }

    /// [`Server::bind`] with other limits.
    pub fn bind_with(
        path: &Path,
        mode: u32,
        allowed_gid: Option<u32>,
        limits: Limits,
    ) -> Result<Server, BindError> {
        let fail = |reason: String| BindError {
            path: path.to_owned(),
            reason,
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(fail(
                        "another rvsd is already listening there; stop it first, or give this one another `--socket`".into(),
                    ))
                }
                Err(_) => std::fs::remove_file(path)
                    .map_err(|err| fail(format!("cannot remove the stale socket: {err}")))?,
            },
            Ok(_) => {
                return Err(fail(
                    "exists and is not a socket; refusing to replace it".into(),
                ))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(fail(format!("cannot inspect: {err}"))),
        }
        let listener = UnixListener::bind(path).map_err(|err| {
            let hint = if err.kind() == io::ErrorKind::NotFound {
                " (does its directory exist?)"
            } else {
                ""
            };
            fail(format!("cannot bind: {err}{hint}"))
        })?;
        if let Some(gid) = allowed_gid {
            std::os::unix::fs::chown(path, None, Some(gid))
                .map_err(|err| fail(format!("cannot give the socket group {gid}: {err}")))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|err| fail(format!("cannot set mode {mode:o}: {err}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|err| fail(format!("cannot make non-blocking: {err}")))?;
        let meta = std::fs::metadata(path)
            .map_err(|err| fail(format!("cannot inspect after binding: {err}")))?;
        // The socket file is created with this process's effective uid.
        let owner_uid = meta.uid();
        let file_id = (meta.dev(), meta.ino());
        Ok(Server {
            listener,
            path: path.to_owned(),
            access: Access {
                owner_uid,
                allowed_gid,
            },
            limits,
            clients: Vec::new(),
            file_id,
            served: Served::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of connected clients.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// What the socket served since it was bound.
    pub fn served(&self) -> Served {
        self.served
    }

    /// Waits up to `max_wait` for socket events, then serves whatever is
    /// ready: new clients, request lines, pending output. Returns early when
    /// anything happened, so call it in a loop.
    pub fn poll(
        &mut self,
        handler: &mut dyn Handler,
        max_wait: Duration,
    ) -> io::Result<PollReport> {
        let mut report = PollReport::default();
        let now = Instant::now();
        let mut wait = max_wait;
        let mut fds = Vec::with_capacity(self.clients.len() + 1);
        fds.push(sys::PollFd::new(self.listener.as_raw_fd(), true, false));
        for client in &self.clients {
            if client.has_ready_line(&self.limits) {
                wait = Duration::ZERO;
            }
            if client.waiting.is_none() {
                let deadline = client.last_activity + self.limits.idle_timeout;
                wait = wait.min(deadline.saturating_duration_since(now));
            }
            fds.push(sys::PollFd::new(
                client.stream.as_raw_fd(),
                client.wants_input(&self.limits),
                !client.output.is_empty(),
            ));
        }
        sys::poll(&mut fds, wait)?;

        if fds[0].readable() {
            self.accept(&mut report);
        }
        let now = Instant::now();
        for (index, client) in self.clients.iter_mut().enumerate() {
            // Clients accepted just now have no poll entry; they are served
            // by the next call.
            let event = fds.get(index + 1);
            if event.is_some_and(|fd| fd.readable() || fd.hung_up()) {
                client.read(&self.limits);
            }
            report.requests += client.serve(handler, &self.limits, now, &mut report.errors);
            client.flush(now);
            if client.waiting.is_none() && client.last_activity + self.limits.idle_timeout <= now {
                client.dead = true;
            }
        }
        let before = self.clients.len();
        self.clients.retain(|client| !client.finished());
        report.closed = before - self.clients.len();
        self.served.requests += report.requests as u64;
        self.served.errors += report.errors as u64;
        self.served.refused += report.refused as u64;
        Ok(report)
    }

    /// Delivers the answer to the request that got [`Reply::Later`] with
    /// `ticket`, and lets its client's next requests be served: its
    /// `result` already encoded as JSON (`serde_json::value::to_raw_value`,
    /// so that a large one is encoded where the work was done, not here),
    /// or its `error`. False when no client waits for it (it went away
    /// meanwhile): the answer is dropped.
    pub fn complete(&mut self, ticket: Ticket, result: Result<Box<RawValue>, String>) -> bool {
        let now = Instant::now();
        let limits = &self.limits;
        let Some(client) = self
            .clients
            .iter_mut()
            .find(|client| client.waiting.is_some_and(|(waits, _)| waits == ticket))
        else {
            return false;
        };
        let (_, id) = client.waiting.take().expect("found waiting");
        let line = match result {
            Ok(result) => proto::encode_encoded_success(id, &result),
            Err(error) => {
                self.served.errors += 1;
                proto::encode_response(&Response::failure(id, error))
            }
        };
        client.queue_line(id, line, limits);
        client.last_activity = now;
        client.flush(now);
        true
    }

    fn accept(&mut self, report: &mut PollReport) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                // WouldBlock ends the batch; other errors (EMFILE, a peer
                // that reset before accept) are transient: next poll retries.
                Err(_) => return,
            };
            let refusal = match sys::peer_credentials(&stream) {
                Ok((uid, gid)) if self.access.allows(uid, gid) => {
                    if self.clients.len() >= self.limits.max_clients {
                        Some(format!(
                            "rvsd is serving its maximum of {} control clients; try again later",
                            self.limits.max_clients
                        ))
                    } else {
                        None
                    }
                }
                Ok(_) => Some(proto::errors::PERMISSION_DENIED.to_owned()),
                Err(err) => Some(format!("cannot read peer credentials: {err}")),
            };
            if let Some(message) = refusal {
                report.refused += 1;
                refuse(stream, &message);
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            report.accepted += 1;
            self.clients.push(Client {
                stream,
                waiting: None,
                input: Vec::new(),
                scanned: 0,
                output: VecDeque::new(),
                last_activity: Instant::now(),
                eof: false,
                closing: false,
                draining: false,
                dead: false,
            });
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only remove the file if it is still ours: a second daemon that
        // replaced a stale socket must not lose it to us.
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.file_id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Tells a client it is not served, without ever blocking: one
/// non-blocking write of one error line, then close.
fn refuse(stream: UnixStream, message: &str) {
    if stream.set_nonblocking(true).is_ok() {
        let _ = (&stream).write(&proto::encode_response(&Response::failure(0, message)));
    }
}

impl Client {
    fn wants_input(&self, limits: &Limits) -> bool {
        if self.draining {
            return !(self.eof || self.dead);
        }
        !(self.eof || self.closing || self.dead)
            && self.output.len() < limits.output_pause
            && self.input.len() < limits.max_line
    }

    fn has_ready_line(&self, limits: &Limits) -> bool {
        !(self.closing || self.dead || self.waiting.is_some())
            && self.output.len() < limits.output_pause
            && self.input.contains(&b'\n')
    }

    fn finished(&self) -> bool {
        self.dead
            || self.waiting.is_none()
                && self.output.is_empty()
                && self.eof
                && (self.closing || !self.input.contains(&b'\n'))
    }

    /// Reads what the socket holds, up to one line's worth beyond what is
    /// buffered, so a flood cannot grow the buffer past `max_line` plus one
    /// read.
    fn read(&mut self, limits: &Limits) {
        let mut chunk = [0u8; 16 * 1024];
        while self.wants_input(limits) {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(_) if self.draining => {}
                Ok(count) => self.input.extend_from_slice(&chunk[..count]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }

    /// Handles complete lines while output has room. Returns the number of
    /// requests handled.
    /// Answers the client's complete request lines, within the round's
    /// limits; returns how many, and adds those answered with an error to
    /// `errors`.
    fn serve(
        &mut self,
        handler: &mut dyn Handler,
        limits: &Limits,
        now: Instant,
        errors: &mut usize,
    ) -> usize {
        let mut handled = 0;
        while !(self.dead || self.closing || self.waiting.is_some())
            && handled < limits.requests_per_round
            && self.output.len() < limits.output_pause
        {
            let Some(offset) = self.input[self.scanned..]
                .iter()
                .position(|&byte| byte == b'\n')
            else {
                self.scanned = self.input.len();
                if self.input.len() >= limits.max_line {
                    let message = format!(
                        "request too large: no newline within {} bytes (the limit is {} bytes per request); closing the connection",
                        self.input.len(),
                        limits.max_line
                    );
                    self.queue(&Response::failure(0, message), limits);
                    self.input.clear();
                    self.scanned = 0;
                    self.closing = true;
                    handled += 1;
                    *errors += 1;
                }
                break;
            };
            let end = self.scanned + offset;
            let mut line: Vec<u8> = self.input.drain(..=end).collect();
            self.scanned = 0;
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() + 1 > limits.max_line {
                let message = format!(
                    "request too large: {} bytes (the limit is {} bytes per request); closing the connection",
                    line.len() + 1,
                    limits.max_line
                );
                self.queue(&Response::failure(0, message), limits);
                self.input.clear();
                self.closing = true;
                handled += 1;
                *errors += 1;
                break;
            }
            self.last_activity = now;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            handled += 1;
            let response = match proto::decode_request(&line) {
                Ok(request) => match handler.handle(request.cmd) {
                    Reply::Now(Ok(result)) => Response::success(request.id, result),
                    Reply::Now(Err(error)) => Response::failure(request.id, error),
                    Reply::Later(ticket) => {
                        self.waiting = Some((ticket, request.id));
                        continue;
                    }
                },
                Err(err) => Response::failure(err.id, err.message),
            };
            if !response.ok {
                *errors += 1;
            }
            self.queue(&response, limits);
        }
        handled
    }

    fn queue(&mut self, response: &Response, limits: &Limits) {
        self.queue_line(response.id, proto::encode_response(response), limits);
    }

    /// Queues the response `line` to request `id`, or an error saying it is
    /// too large.
    fn queue_line(&mut self, id: u64, mut line: Vec<u8>, limits: &Limits) {
        if line.len() > limits.max_response {
            let message = format!(
                "response too large: {} bytes (the limit is {}); ask for less (one service, or a smaller page)",
                line.len(),
                limits.max_response
            );
            line = proto::encode_response(&Response::failure(id, message));
        }
        self.output.extend(line);
    }

    /// Writes what the socket takes without blocking.
    fn flush(&mut self, now: Instant) {
        while !self.output.is_empty() && !self.dead {
            let (front, _) = self.output.as_slices();
            match self.stream.write(front) {
                Ok(0) => self.dead = true,
                Ok(count) => {
                    self.output.drain(..count);
                    self.last_activity = now;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
        }
        if self.closing && self.output.is_empty() && !self.draining {
            self.draining = true;
            if self.stream.shutdown(std::net::Shutdown::Write).is_err() {
                self.dead = true;
            }
        }
    }
}

/// The two system calls std does not wrap: `poll(2)` and `SO_PEERCRED`.
#[allow(unsafe_code)]
mod sys {
    use std::io;
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    #[repr(transparent)]
    pub struct PollFd(libc::pollfd);

    impl PollFd {
        pub fn new(fd: RawFd, read: bool, write: bool) -> Self {
            let mut events = 0;
            if read {
                events |= libc::POLLIN;
            }
            if write {
                events |= libc::POLLOUT;
            }
            PollFd(libc::pollfd {
                fd,
                events,
                revents: 0,
            })
        }

        pub fn readable(&self) -> bool {
            self.0.revents & libc::POLLIN != 0
        }

        pub fn hung_up(&self) -> bool {
            self.0.revents & (libc::POLLHUP | libc::POLLERR) != 0
        }
    }

    /// `poll(2)` over `fds` for at most `timeout` (rounded up to a
    /// millisecond); EINTR counts as a timeout.
    pub fn poll(fds: &mut [PollFd], timeout: Duration) -> io::Result<usize> {
        let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `PollFd` is a transparent wrapper of `libc::pollfd`, so the
        // slice is a valid array of `fds.len()` pollfds that poll may write
        // `revents` into; the length fits nfds_t.
        let ready = unsafe {
            libc::poll(
                fds.as_mut_ptr().cast::<libc::pollfd>(),
                fds.len() as libc::nfds_t,
                millis,
            )
        };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(err);
        }
        Ok(ready as usize)
    }

    /// The uid and gid of the process at the other end of `stream`.
    pub fn peer_credentials(stream: &UnixStream) -> io::Result<(u32, u32)> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` is a live, writable ucred and `len` holds its exact
        // size, which is what SO_PEERCRED writes; the fd is owned by `stream`
        // for the whole call.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast::<libc::c_void>(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((cred.uid, cred.gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Client as RvsClient, ClientError};
    use crate::proto::{Timeouts, VersionInfo};
    use serde_json::json;
    use std::io::{BufRead, BufReader};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread::{self, JoinHandle};

    #[test]
    fn access_allows_root_owner_and_group() {
        let access = Access {
            owner_uid: 500,
            allowed_gid: Some(42),
        };
        assert!(access.allows(0, 0));
        assert!(access.allows(500, 100));
        assert!(access.allows(1000, 42));
        assert!(!access.allows(1000, 100));
        let root_only = Access {
            owner_uid: 0,
            allowed_gid: None,
        };
        assert!(!root_only.allows(1000, 1000));
    }

    fn temp_dir() -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rvs-server-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A handler answering like a small daemon; `list_services` returns
    /// `big` bytes of padding so tests can fill socket buffers.
    fn mock(cmd: Command) -> Result<Value, String> {
        match cmd {
            Command::Version {} => Ok(serde_json::to_value(VersionInfo {
                daemon: "test".into(),
                protocol: proto::VERSION,
            })
            .unwrap()),
            Command::Clear {} => Ok(Value::Null),
            Command::GetTimeouts {} => Ok(serde_json::to_value(Timeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300,
            })
            .unwrap()),
            Command::ListServices { .. } => Ok(json!({ "padding": "x".repeat(200_000) })),
            Command::DeleteService { .. } => Err(proto::errors::NO_SUCH_SERVICE.into()),
            _ => Err("not in this mock".into()),
        }
    }

    struct Running {
        dir: PathBuf,
        path: PathBuf,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    /// A later answer, as the test sends it to the server's thread.
    type Answer = (Ticket, Result<Value, String>);

    /// [`mock`], but `stats` is answered later: its ticket goes to
    /// `started`, and the answer is whatever the test sends the server's
    /// thread for it.
    struct Deferring {
        next: u64,
        started: mpsc::Sender<Ticket>,
    }

    impl Handler for Deferring {
        fn handle(&mut self, cmd: Command) -> Reply {
            match cmd {
                Command::Stats {} => {
                    self.next += 1;
                    let ticket = Ticket(self.next);
                    self.started.send(ticket).unwrap();
                    Reply::Later(ticket)
                }
                other => Reply::Now(mock(other)),
            }
        }
    }

    impl Running {
        fn start(limits: Limits) -> Running {
            Running::serve(limits, Box::new(mock), None)
        }

        /// A server whose handler is [`Deferring`]: returns the tickets of
        /// the `stats` requests it answers later, and where to send their
        /// answers.
        fn deferring(limits: Limits) -> (Running, mpsc::Receiver<Ticket>, mpsc::Sender<Answer>) {
            let (started, tickets) = mpsc::channel();
            let (answer, answers) = mpsc::channel();
            let handler = Deferring { next: 0, started };
            let running = Running::serve(limits, Box::new(handler), Some(answers));
            (running, tickets, answer)
        }

        fn serve(
            limits: Limits,
            mut handler: Box<dyn Handler + Send>,
            answers: Option<mpsc::Receiver<Answer>>,
        ) -> Running {
            let dir = temp_dir();
            let path = dir.join("rvsd.sock");
            let mut server = Server::bind_with(&path, 0o600, None, limits).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let thread = thread::spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    server
                        .poll(handler.as_mut(), Duration::from_millis(20))
                        .unwrap();
                    for (ticket, result) in answers.iter().flat_map(|a| a.try_iter()) {
                        let encoded = result.map(|v| serde_json::value::to_raw_value(&v).unwrap());
                        server.complete(ticket, encoded);
                    }
                }
            });
            Running {
                dir,
                path,
                stop,
                thread: Some(thread),
            }
        }

        fn client(&self) -> RvsClient {
            RvsClient::connect_with_timeout(&self.path, Duration::from_secs(5)).unwrap()
        }

        fn raw(&self) -> (UnixStream, BufReader<UnixStream>) {
            let stream = UnixStream::connect(&self.path).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let reader = BufReader::new(stream.try_clone().unwrap());
            (stream, reader)
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                thread.join().unwrap();
            }
            assert!(!self.path.exists(), "the server removes its socket");
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn read_response(reader: &mut BufReader<UnixStream>) -> Response {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("{line:?}: {err}"))
    }

    fn assert_served(running: &Running) {
        let started = Instant::now();
        let version: VersionInfo = running.client().call_as(Command::Version {}).unwrap();
        assert_eq!(version.protocol, proto::VERSION);
        assert!(started.elapsed() < Duration::from_secs(1), "served late");
    }

    #[test]
    fn many_clients_at_once() {
        let running = Running::start(Limits::default());
        let path = running.path.clone();
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let path = path.clone();
                thread::spawn(move || {
                    let mut client = RvsClient::connect(&path).unwrap();
                    for _ in 0..50 {
                        let timeouts: Timeouts = client.call_as(Command::GetTimeouts {}).unwrap();
                        assert_eq!(timeouts.tcp, 900);
                        match client.call(Command::DeleteService {
                            service: proto::ServiceKey::Mark(1),
                        }) {
                            Err(ClientError::Daemon(message)) => {
                                assert_eq!(message, "No such service")
                            }
                            other => panic!("{other:?}"),
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }

    #[test]
    fn pipelined_requests_answer_in_order() {
        let running = Running::start(Limits::default());
        let (mut stream, mut reader) = running.raw();
        let mut batch = Vec::new();
        for id in 1..=5 {
            batch.extend(proto::encode_request(&proto::Request::new(
                id,
                Command::Clear {},
            )));
        }
        stream.write_all(&batch).unwrap();
        for id in 1..=5 {
            let response = read_response(&mut reader);
            assert_eq!((response.id, response.ok), (id, true));
        }
    }

    #[test]
    fn an_answer_given_later_keeps_order_and_blocks_nobody() {
        let (running, tickets, answer) = Running::deferring(Limits::default());
        let (mut stream, mut reader) = running.raw();
        let mut batch = Vec::new();
        for (id, cmd) in [
            (1, Command::Stats {}),
            (2, Command::Version {}),
            (3, Command::Stats {}),
        ] {
            batch.extend(proto::encode_request(&proto::Request::new(id, cmd)));
        }
        stream.write_all(&batch).unwrap();
        // The request after the pending one waits: nothing more is taken
        // from this client, so the second `stats` has not even started.
        let first = tickets.recv_timeout(Duration::from_secs(5)).unwrap();
        thread::sleep(Duration::from_millis(200));
        assert!(tickets.try_recv().is_err(), "served past a pending answer");
        // Others are served meanwhile.
        assert_served(&running);
        answer.send((first, Ok(json!("first")))).unwrap();
        let response = read_response(&mut reader);
        assert_eq!((response.id, response.result), (1, Some(json!("first"))));
        assert_eq!(read_response(&mut reader).id, 2);
        let third = tickets.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_ne!(third, first);
        answer.send((third, Err("refused".to_owned()))).unwrap();
        let response = read_response(&mut reader);
        assert_eq!(
            (response.id, response.error.as_deref()),
            (3, Some("refused"))
        );
    }

    #[test]
    fn a_client_waiting_for_a_later_answer_is_not_idle() {
        let limits = Limits {
            idle_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let (running, tickets, answer) = Running::deferring(limits);
        let (mut stream, mut reader) = running.raw();
        stream
            .write_all(&proto::encode_request(&proto::Request::new(
                4,
                Command::Stats {},
            )))
            .unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let ticket = tickets.recv_timeout(Duration::from_secs(5)).unwrap();
        // Longer than the idle timeout, and the client has hung up.
        thread::sleep(Duration::from_millis(600));
        answer.send((ticket, Ok(Value::Null))).unwrap();
        let response = read_response(&mut reader);
        assert_eq!((response.id, response.ok), (4, true));
    }

    #[test]
    fn half_a_line_does_not_stall_others() {
        let running = Running::start(Limits::default());
        let (mut stalled, mut stalled_reader) = running.raw();
        stalled.write_all(br#"{"v":1,"id":9,"cmd":"#).unwrap();
        assert_served(&running);
        // The stalled client finishes later and is answered.
        stalled.write_all(b"{\"op\":\"clear\"}}\n").unwrap();
        let response = read_response(&mut stalled_reader);
        assert_eq!((response.id, response.ok), (9, true));
    }

    #[test]
    fn garbage_gets_precise_errors_and_the_connection_stays() {
        let running = Running::start(Limits::default());
        let (mut stream, mut reader) = running.raw();
        let cases: &[(&str, u64, &str)] = &[
            ("hello", 0, "malformed request: not JSON"),
            (
                r#"{"v":2,"id":4,"cmd":{"op":"clear"}}"#,
                4,
                "unsupported protocol version 2; this rvsd speaks version 1",
            ),
            (
                r#"{"v":1,"id":5,"cmd":{"op":"reboot"}}"#,
                5,
                "invalid request: unknown variant `reboot`",
            ),
            (
                r#"{"v":1,"id":6}"#,
                6,
                "invalid request: missing field `cmd`",
            ),
        ];
        for (line, id, prefix) in cases {
            stream.write_all(format!("{line}\n").as_bytes()).unwrap();
            let response = read_response(&mut reader);
            assert_eq!((response.id, response.ok), (*id, false), "{line}");
            let error = response.error.unwrap();
            assert!(error.starts_with(prefix), "{line}: {error}");
        }
        stream
            .write_all(&proto::encode_request(&proto::Request::new(
                7,
                Command::Clear {},
            )))
            .unwrap();
        let response = read_response(&mut reader);
        assert_eq!((response.id, response.ok), (7, true));
    }

    #[test]
    fn oversized_line_is_refused_and_closed() {
        let running = Running::start(Limits::default());
        let (mut stream, mut reader) = running.raw();
        // Writes may fail once the server has closed; the reply is what
        // matters.
        let _ = stream.write_all(&vec![b'x'; 70 * 1024]);
        let response = read_response(&mut reader);
        assert!(!response.ok);
        assert!(
            response
                .error
                .as_deref()
                .unwrap()
                .starts_with("request too large"),
            "{response:?}"
        );
        let mut rest = String::new();
        assert_eq!(
            reader.read_line(&mut rest).unwrap(),
            0,
            "closed after the error"
        );
        assert_served(&running);
    }

    #[test]
    fn a_client_that_never_reads_is_dropped_and_blocks_nobody() {
        let limits = Limits {
            idle_timeout: Duration::from_millis(500),
            ..Limits::default()
        };
        let running = Running::start(limits);
        let hog = UnixStream::connect(&running.path).unwrap();
        hog.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let request = proto::encode_request(&proto::Request::new(
            1,
            Command::ListServices { service: None },
        ));
        // Keep asking for 200 KB answers without reading any, until the
        // server stops reading us (our writes time out) or drops us.
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < Duration::from_secs(3) {
            match (&hog).write_all(&request) {
                Ok(()) => sent += 1,
                Err(_) => break,
            }
        }
        assert!(
            sent < 10_000,
            "the server kept reading a client that never reads"
        );
        assert_served(&running);
        // After the idle timeout the server has closed the hog: what it
        // had buffered for the hog drains, then the stream ends.
        thread::sleep(Duration::from_millis(1200));
        hog.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut drained = Vec::new();
        let _ = (&hog).read_to_end(&mut drained);
        assert!(
            (&hog).write_all(&request).is_err(),
            "the server closed the hog"
        );
        assert_served(&running);
    }

    #[test]
    fn too_many_clients_are_told_so() {
        let limits = Limits {
            max_clients: 2,
            ..Limits::default()
        };
        let running = Running::start(limits);
        let mut first = running.client();
        let mut second = running.client();
        first.call(Command::Clear {}).unwrap();
        second.call(Command::Clear {}).unwrap();
        let mut third = running.client();
        match third.call(Command::Clear {}) {
            Err(ClientError::Daemon(message)) => {
                assert_eq!(
                    message,
                    "rvsd is serving its maximum of 2 control clients; try again later"
                )
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        // The freed slot is reused once the server notices the close.
        let started = Instant::now();
        loop {
            match running.client().call(Command::Clear {}) {
                Ok(_) => break,
                Err(_) if started.elapsed() < Duration::from_secs(2) => {
                    thread::sleep(Duration::from_millis(20))
                }
                Err(err) => panic!("{err}"),
            }
        }
    }

    #[test]
    fn a_request_then_hangup_is_still_answered() {
        let running = Running::start(Limits::default());
        let (mut stream, mut reader) = running.raw();
        stream
            .write_all(&proto::encode_request(&proto::Request::new(
                3,
                Command::Clear {},
            )))
            .unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let response = read_response(&mut reader);
        assert_eq!((response.id, response.ok), (3, true));
    }

    #[test]
    fn idle_clients_are_closed() {
        let limits = Limits {
            idle_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let running = Running::start(limits);
        let (_stream, mut reader) = running.raw();
        let mut line = String::new();
        assert_eq!(reader.read_line(&mut line).unwrap(), 0);
    }

    #[test]
    fn bind_replaces_a_stale_socket_and_refuses_a_live_one() {
        let dir = temp_dir();
        let path = dir.join("rvsd.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a dead listener leaves its file");
        let server = Server::bind(&path, 0o600, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = Server::bind(&path, 0o600, None).err().unwrap();
        assert!(
            err.to_string()
                .contains("another rvsd is already listening"),
            "{err}"
        );
        drop(server);
        assert!(!path.exists());

        let file = dir.join("not-a-socket");
        std::fs::write(&file, "keep me").unwrap();
        let err = Server::bind(&file, 0o600, None).err().unwrap();
        assert!(
            err.to_string()
                .ends_with("exists and is not a socket; refusing to replace it"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

        let err = Server::bind(&dir.join("missing/rvsd.sock"), 0o600, None)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("does its directory exist?"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
