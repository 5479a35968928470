//! One check of each kind, as keepalived runs it: TCP_CHECK connects,
//! HTTP_GET / SSL_GET fetch every URL (status code and MD5 of the body),
//! MISC_CHECK runs a script (killed at `misc_timeout`), UDP_CHECK sends a
//! datagram. Each returns `Ok(weight)` (a MISC_CHECK with `misc_dynamic`
//! may give one) or the reason it failed, every step bounded in time.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::time::timeout;

use crate::config::{CheckKind, Probe, ProbeUrl};

/// What one check found: up (with a weight from `misc_dynamic`) or why not.
pub type Outcome = Result<Option<u32>, String>;

/// Most bytes of an HTTP answer read (keepalived reads the whole body for
/// its digest; a real streaming without end must not hold the checker).
const MAX_ANSWER: usize = 4 << 20;

/// Runs `probe` once.
pub async fn run(probe: &Probe) -> Outcome {
    match probe.kind {
        CheckKind::TcpCheck => connect(probe)
            .await
            .map(|_| None)
            .map_err(|e| format!("TCP_CHECK {e}")),
        CheckKind::HttpGet | CheckKind::SslGet => {
            for url in &probe.urls {
                http(probe, url).await?;
            }
            Ok(None)
        }
        CheckKind::MiscCheck => misc(probe).await,
        CheckKind::UdpCheck => udp(probe).await.map(|()| None),
    }
}

fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

async fn connect(probe: &Probe) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("cannot open a socket: {e}"))?;
    if let Some(bind) = probe.bind {
        socket
            .bind(SocketAddr::V4(SocketAddrV4::new(bind, 0)))
            .map_err(|e| format!("cannot bind to {bind}: {e}"))?;
    }
    let target = probe.target;
    match timeout(
        probe.connect_timeout,
        socket.connect(SocketAddr::V4(target)),
    )
    .await
    {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("connect to {target}: {}", io_reason(&e))),
        Err(_) => Err(format!(
            "connect to {target}: no answer within {}",
            seconds(probe.connect_timeout)
        )),
    }
}

fn io_reason(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        _ => err.to_string(),
    }
}

/// One URL: the request, the answer read to its end within
/// `connect_timeout` (keepalived's bound for each step), then its status
/// code and digest.
async fn http(probe: &Probe, url: &ProbeUrl) -> Result<(), String> {
    let what = format!("{} {}", probe.kind, url.path);
    let stream = connect(probe).await.map_err(|e| format!("{what}: {e}"))?;
    let host = url
        .virtualhost
        .clone()
        .unwrap_or_else(|| match probe.target.port() {
            80 | 443 => probe.target.ip().to_string(),
            port => format!("{}:{port}", probe.target.ip()),
        });
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: rvs-healthcheck\r\nConnection: close\r\n\r\n",
        url.path
    );
    let answer = if probe.kind == CheckKind::SslGet {
        let name = tls_name(url.virtualhost.as_deref(), *probe.target.ip());
        let tls = tokio_rustls::TlsConnector::from(tls_config(probe.enable_sni));
        let stream = timeout(probe.connect_timeout, tls.connect(name, stream))
            .await
            .map_err(|_| {
                format!(
                    "{what}: no TLS handshake within {}",
                    seconds(probe.connect_timeout)
                )
            })?
            .map_err(|e| format!("{what}: TLS: {e}"))?;
        exchange(stream, &request, probe.connect_timeout).await
    } else {
        exchange(stream, &request, probe.connect_timeout).await
    }
    .map_err(|e| format!("{what}: {e}"))?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let body_at = match response.parse(&answer) {
        Ok(httparse::Status::Complete(at)) => at,
        Ok(httparse::Status::Partial) => {
            return Err(format!("{what}: the answer ended inside its headers"))
        }
        Err(e) => return Err(format!("{what}: not an HTTP answer ({e})")),
    };
    let code = response.code.unwrap_or(0);
    if !url
        .status
        .iter()
        .any(|(low, high)| (*low..=*high).contains(&code))
    {
        let expected: Vec<String> = url
            .status
            .iter()
            .map(|(low, high)| match low == high {
                true => low.to_string(),
                false => format!("{low}-{high}"),
            })
            .collect();
        return Err(format!(
            "{what}: status {code}, expected {}",
            expected.join(",")
        ));
    }
    if let Some(expected) = &url.digest {
        let digest: String = Md5::digest(&answer[body_at..])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if &digest != expected {
            return Err(format!("{what}: digest {digest}, expected {expected}"));
        }
    }
    Ok(())
}

/// Sends `request`, reads the answer to its end (at most [`MAX_ANSWER`]).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
    limit: Duration,
) -> Result<Vec<u8>, String> {
    let work = async {
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                // A TLS server that closes without close_notify: the
                // answer is what came.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(answer);
            }
            if answer.len() + n > MAX_ANSWER {
                return Err(io::Error::other(format!(
                    "the answer is longer than {} MiB",
                    MAX_ANSWER >> 20
                )));
            }
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    match timeout(limit, work).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(io_reason(&e)),
        Err(_) => Err(format!("no complete answer within {}", seconds(limit))),
    }
}

fn tls_name(virtualhost: Option<&str>, ip: Ipv4Addr) -> rustls::pki_types::ServerName<'static> {
    virtualhost
        .and_then(|host| rustls::pki_types::ServerName::try_from(host.to_owned()).ok())
        .unwrap_or_else(|| rustls::pki_types::ServerName::IpAddress(ip.into()))
}

/// TLS as keepalived's SSL_GET does it: the real's certificate is not
/// verified (a check asks whether the service answers, not who it is).
fn tls_config(sni: bool) -> Arc<rustls::ClientConfig> {
    static CONFIGS: OnceLock<[Arc<rustls::ClientConfig>; 2]> = OnceLock::new();
    let configs = CONFIGS.get_or_init(|| {
        [false, true].map(|sni| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            config.enable_sni = sni;
            Arc::new(config)
        })
    });
    Arc::clone(&configs[usize::from(sni)])
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The script, in its own process group so that a timeout kills whatever
/// it started too.
async fn misc(probe: &Probe) -> Outcome {
    let what = format!("MISC_CHECK `{}`", probe.misc_path);
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&probe.misc_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let status = match timeout(probe.misc_timeout, child.wait()).await {
        Ok(status) => status.map_err(|e| format!("{what}: {e}"))?,
        Err(_) => {
            if let Some(pid) = child.id() {
                kill_group(pid);
            }
            let _ = child.wait().await;
            return Err(format!(
                "{what}: still running after misc_timeout {}, killed",
                seconds(probe.misc_timeout)
            ));
        }
    };
    match status.code() {
        Some(0) => Ok(None),
        Some(code @ 2..=255) if probe.misc_dynamic => Ok(Some(code as u32 - 2)),
        Some(code) => Err(format!("{what}: exit status {code}")),
        None => Err(format!("{what}: killed by a signal")),
    }
}

/// The datagram; with `require_reply` the answer (starting with `reply`),
/// else up unless the real refuses it (ICMP port unreachable) within
/// `connect_timeout`.
async fn udp(probe: &Probe) -> Result<(), String> {
    let target = probe.target;
    let what = format!("UDP_CHECK {target}");
    let bind = SocketAddrV4::new(probe.bind.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("{what}: cannot bind to {bind}: {e}"))?;
    socket
        .connect(target)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    socket
        .send(&probe.payload)
        .await
        .map_err(|e| format!("{what}: send: {}", io_reason(&e)))?;
    let mut answer = [0u8; 2048];
    match timeout(probe.connect_timeout, socket.recv(&mut answer)).await {
        Ok(Ok(n)) => {
            if answer[..n].starts_with(&probe.reply) {
                Ok(())
            } else {
                Err(format!(
                    "{what}: the reply does not start with the expected bytes"
                ))
            }
        }
        Ok(Err(e)) => Err(format!("{what}: {}", io_reason(&e))),
        Err(_) if probe.require_reply => Err(format!(
            "{what}: no reply within {}",
            seconds(probe.connect_timeout)
        )),
        Err(_) => Ok(()),
    }
}

/// SIGKILL to the process group `pid` leads (the script and its children).
#[allow(unsafe_code)]
fn kill_group(pid: u32) {
    // SAFETY: kill(2) takes no pointers; a negative pid names the group.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
}
