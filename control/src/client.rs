//! The client side of the control protocol, used by rvsadm and rvsctl.

use crate::proto::{self, Command, ConnEntry, ConnPage, Request, Response, Upload};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where rvsd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";

/// Environment variable naming the socket.
pub const SOCKET_ENV: &str = "RVS_SOCKET";

/// Room in a request line for everything but the text or commands a
/// request carries.
pub const REQUEST_OVERHEAD: usize = 256;

/// How long a call waits for the daemon between bytes of its answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket to use: `--socket`, else `$RVS_SOCKET`, else
/// [`DEFAULT_SOCKET`].
pub fn socket_path(flag: Option<&str>) -> PathBuf {
    match flag {
        Some(path) => PathBuf::from(path),
        None => match std::env::var_os(SOCKET_ENV) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => PathBuf::from(DEFAULT_SOCKET),
        },
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon to talk to.
    Connect { path: PathBuf, source: io::Error },
    /// The daemon did not answer within the timeout.
    Timeout { path: PathBuf },
    /// The connection broke.
    Io { path: PathBuf, source: io::Error },
    /// The daemon answered something this client does not understand.
    Protocol(String),
    /// The daemon refused the command; the message is the daemon's (ipvsadm's
    /// words where ipvsadm has them).
    Daemon(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { path, source } => write!(
                f,
                "cannot connect to rvsd at {}: {} (is rvsd running? set --socket or {SOCKET_ENV})",
                path.display(),
                os_message(source)
            ),
            ClientError::Timeout { path } => write!(
                f,
                "rvsd at {} did not answer within {} s",
                path.display(),
                DEFAULT_TIMEOUT.as_secs()
            ),
            ClientError::Io { path, source } => write!(
                f,
                "lost the connection to rvsd at {}: {}",
                path.display(),
                os_message(source)
            ),
            ClientError::Protocol(message) => write!(f, "unexpected answer from rvsd: {message}"),
            ClientError::Daemon(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ClientError {}

/// An io::Error as the C library words it, without Rust's "(os error N)".
fn os_message(err: &io::Error) -> String {
    let text = err.to_string();
    match text.rfind(" (os error ") {
        Some(cut) if text.ends_with(')') => text[..cut].to_owned(),
        _ => text,
    }
}

/// A connection to rvsd.
/// A response line with its result decoded as `T`.
#[derive(Deserialize)]
struct TypedResponse<T> {
    v: u32,
    id: u64,
    ok: bool,
    #[serde(default = "none")]
    result: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

fn none<T>() -> Option<T> {
    None
}

pub struct Client {
    path: PathBuf,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connects to the daemon at `path` with [`DEFAULT_TIMEOUT`].
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        Client::connect_with_timeout(path, DEFAULT_TIMEOUT)
    }

    pub fn connect_with_timeout(path: &Path, timeout: Duration) -> Result<Client, ClientError> {
        let connect_error = |source| ClientError::Connect {
            path: path.to_owned(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(connect_error)?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(connect_error)?;
        let reader = BufReader::new(stream.try_clone().map_err(connect_error)?);
        Ok(Client {
            path: path.to_owned(),
            writer: stream,
            reader,
            next_id: 1,
        })
    }

    /// Sends `cmd` and waits for its answer: the result, or the daemon's
    /// error as [`ClientError::Daemon`].
    pub fn call(&mut self, cmd: Command) -> Result<Value, ClientError> {
        self.call_as(cmd)
    }

    /// [`Client::call`], decoding the result as `T` straight from the
    /// response line: a large listing never becomes a generic JSON tree.
    pub fn call_as<T: DeserializeOwned>(&mut self, cmd: Command) -> Result<T, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let line = proto::encode_request(&Request::new(id, cmd));
        if line.len() > proto::MAX_REQUEST {
            return Err(ClientError::Protocol(format!(
                "request of {} bytes is over the {} byte limit",
                line.len(),
                proto::MAX_REQUEST
            )));
        }
        let mut answer = String::new();
        if let Err(err) = self.writer.write_all(&line) {
            // A daemon that refuses the connection (permission, too many
            // clients) writes why and closes before reading: show that.
            return match self.reader.read_line(&mut answer) {
                Ok(_) => match serde_json::from_str::<Response>(&answer) {
                    Ok(response) if !response.ok => {
                        Err(ClientError::Daemon(response.into_result().unwrap_err()))
                    }
                    _ => Err(self.io_error(err)),
                },
                Err(_) => Err(self.io_error(err)),
            };
        }
        let read = self
            .reader
            .read_line(&mut answer)
            .map_err(|err| self.io_error(err))?;
        if read == 0 || !answer.ends_with('\n') {
            return Err(self.io_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "rvsd closed the connection",
            )));
        }
        let response: TypedResponse<T> = match serde_json::from_str(&answer) {
            Ok(response) => response,
            // Not a T: maybe a refusal, which carries no result; else the
            // answer is not what this command returns.
            Err(err) => match serde_json::from_str::<Response>(&answer) {
                Ok(plain) if !plain.ok => TypedResponse {
                    v: plain.v,
                    id: plain.id,
                    ok: false,
                    result: None,
                    error: plain.error,
                },
                Ok(_) => return Err(ClientError::Protocol(format!("unexpected result: {err}"))),
                Err(err) => {
                    return Err(ClientError::Protocol(format!("not a response line: {err}")))
                }
            },
        };
        if response.v != proto::VERSION {
            return Err(ClientError::Protocol(format!(
                "protocol version {}, this client speaks {}",
                response.v,
                proto::VERSION
            )));
        }
        // id 0 is a refusal of the connection itself (permission, too many
        // clients), which the daemon sends before reading any request.
        if response.id != id && response.id != 0 {
            return Err(ClientError::Protocol(format!(
                "answer to request {} while waiting for {id}",
                response.id
            )));
        }
        if !response.ok {
            return Err(ClientError::Daemon(response.error.unwrap_or_else(|| {
                "rvsd refused the request and said nothing".to_owned()
            })));
        }
        match response.result {
            Some(result) => Ok(result),
            // A command whose result is null.
            None => serde_json::from_value(Value::Null)
                .map_err(|err| ClientError::Protocol(format!("unexpected result: {err}"))),
        }
    }

    /// Uploads `text`, too long for one request line, in pieces that each
    /// fit one ([`Command::UploadConfig`]); returns the upload's id for the
    /// command that uses it.
    pub fn upload(&mut self, text: &str) -> Result<u64, ClientError> {
        let mut upload = None;
        for piece in crate::rvsctl::upload_pieces(text, proto::MAX_REQUEST - REQUEST_OVERHEAD) {
            let answer: Upload = self.call_as(Command::UploadConfig {
                upload,
                text: piece.to_owned(),
            })?;
            upload = Some(answer.upload);
        }
        upload.ok_or_else(|| ClientError::Protocol("nothing to upload".to_owned()))
    }

    /// Every tracked connection, fetched `page` at a time as the iterator
    /// advances, so a million connections never sit in memory at once.
    pub fn connections(&mut self, page: u32) -> Connections<'_> {
        Connections {
            client: self,
            page: page.clamp(1, proto::MAX_CONNECTION_PAGE),
            buffered: Vec::new().into_iter(),
            cursor: Some(None),
        }
    }

    fn io_error(&self, source: io::Error) -> ClientError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                path: self.path.clone(),
            },
            _ => ClientError::Io {
                path: self.path.clone(),
                source,
            },
        }
    }
}

/// Iterator of [`Client::connections`].
pub struct Connections<'a> {
    client: &'a mut Client,
    page: u32,
    buffered: std::vec::IntoIter<ConnEntry>,
    /// `Some(cursor)`: a page remains to fetch from `cursor`; `None`: done.
    cursor: Option<Option<u64>>,
}

impl Iterator for Connections<'_> {
    type Item = Result<ConnEntry, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.buffered.next() {
                return Some(Ok(entry));
            }
            let cursor = self.cursor.take()?;
            let page: ConnPage = match self.client.call_as(Command::ListConnections {
                cursor,
                limit: self.page,
            }) {
                Ok(page) => page,
                Err(err) => return Some(Err(err)),
            };
            self.cursor = page.next.map(Some);
            self.buffered = page.entries.into_iter();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_daemon_message() {
        let path = Path::new("/nonexistent-rvs-dir/rvsd.sock");
        let err = Client::connect(path).err().unwrap();
        assert_eq!(
            err.to_string(),
            "cannot connect to rvsd at /nonexistent-rvs-dir/rvsd.sock: No such file or directory (is rvsd running? set --socket or RVS_SOCKET)"
        );
    }

    #[test]
    fn flag_wins_over_default() {
        assert_eq!(
            socket_path(Some("/tmp/x.sock")),
            PathBuf::from("/tmp/x.sock")
        );
    }
}
