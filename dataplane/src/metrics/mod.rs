//! Prometheus metrics: `GET /metrics` on `metrics.listen`, served by a
//! thread of its own (`rvs-metrics`, [`http`]), never a worker.
//!
//! Nothing is counted twice: at each scrape the control thread hands over
//! a [`Frame`] (the services and reals as configured, what health made of
//! them, a few numbers only it has) and the scrape reads every counter
//! where the workers keep it ([`WorkerCounters`], the [`RealBook`], the
//! kernel interfaces' counters, the PMDs' own), with relaxed loads: no lock
//! is shared with a worker and nothing is added to the packet path.
//! Encoded with prometheus-client (the Prometheus organisation's client)
//! from one [`Collector`]: Prometheus text 0.0.4, or OpenMetrics when the
//! scraper asks for it.

pub mod http;

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelEncoder, LabelSetEncoder,
    NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use rvs_control::health::{HealthReader, RealMetrics, DURATION_BUCKETS};
use rvs_control::model::Forward;
use rvs_control::proto::ServiceKey;
use rvs_control::server::Served;

use crate::counters::{DropReason, RealBook, RealTotals, WorkerCounters};
use crate::dpdk::PortHandle;
use crate::kernel::KernelCounters;

/// What the scrapes read for as long as rvsd runs.
pub struct Sources {
    pub workers: Vec<Arc<WorkerCounters>>,
    pub book: Arc<RealBook>,
    pub health: HealthReader,
    /// Per port: its name, device and DPDK port.
    pub ports: Vec<(String, String, PortHandle)>,
    /// Per kernel interface: its port's name, its name and its counters.
    pub kernel: Vec<(String, String, usize)>,
    pub kernel_counters: Arc<[KernelCounters]>,
    /// Per-worker connection table capacity (`limits.connections`).
    pub table_capacity: u64,
    pub mbufs: u64,
    pub ipvs_compat: bool,
}

/// A service as the scrape labels it.
#[derive(Clone, Debug)]
pub struct ServiceRow {
    pub key: ServiceKey,
    /// Reals that may take a new connection now (listed, weight above 0).
    pub usable: u64,
    /// Whether the service has its quorum; `None`: not checked.
    pub quorum_up: Option<bool>,
}

/// A configured real of a service.
#[derive(Clone, Debug)]
pub struct RealRow {
    /// Index into [`Frame::services`].
    pub service: usize,
    pub address: Ipv4Addr,
    pub port: u16,
    pub forward: Forward,
    pub id: u32,
    /// The weight it schedules with now: 0 when taken out by its checks.
    pub weight: u32,
    /// `None`: not checked.
    pub up: Option<bool>,
}

/// What only the control thread knows, handed over for one scrape.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    pub services: Vec<ServiceRow>,
    pub reals: Vec<RealRow>,
    /// Configurations adopted since start.
    pub generation: u64,
    /// The last reload (SIGHUP, `rvsctl reload`): success and Unix time.
    pub reload: Option<(bool, f64)>,
    pub mbufs_free: u64,
    /// The FullNAT local addresses the services list now (`Snapshot::lips`).
    pub local_addresses: Vec<Ipv4Addr>,
    /// What the control socket served.
    pub control: Served,
}

/// The text of one scrape.
pub fn encode(sources: &Arc<Sources>, frame: Frame, openmetrics: bool) -> String {
    let mut text = String::new();
    // Writing to a String does not fail; a collector error would be ours.
    write(sources, frame, openmetrics, &mut text).expect("metrics encode into a String");
    text
}

/// Writes one scrape's exposition to `out` as it is encoded (in pieces of
/// a few KiB: a scrape of a million samples is never held whole).
pub fn write(
    sources: &Arc<Sources>,
    frame: Frame,
    openmetrics: bool,
    out: &mut impl fmt::Write,
) -> fmt::Result {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        sources: Arc::clone(sources),
        texts: Texts::new(&frame),
        frame,
    }));
    if openmetrics {
        prometheus_client::encoding::text::encode(out, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(out, &registry)
    }
}

struct Scrape {
    sources: Arc<Sources>,
    frame: Frame,
    texts: Texts,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

/// A label whose value is written as it is encoded, never held: a scrape
/// of a million samples allocates no label strings.
struct Label<'a>(&'static str, Value<'a>);

/// A label's value: text, or a number or address written without `fmt`'s
/// machinery (for the few labels not in [`Texts`]).
#[derive(Clone, Copy)]
enum Value<'a> {
    Text(&'a str),
    Number(u64),
    Address(Ipv4Addr),
}

impl Value<'_> {
    fn write(self, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Value::Text(text) => out.write_str(text),
            Value::Number(n) => out.write_str(itoa::Buffer::new().format(n)),
            Value::Address(address) => {
                let mut buffer = [0u8; 15];
                let mut len = 0;
                for (i, octet) in address.octets().into_iter().enumerate() {
                    if i > 0 {
                        buffer[len] = b'.';
                        len += 1;
                    }
                    let mut digits = itoa::Buffer::new();
                    let digits = digits.format(octet).as_bytes();
                    buffer[len..len + digits.len()].copy_from_slice(digits);
                    len += digits.len();
                }
                // Digits and dots only.
                out.write_str(std::str::from_utf8(&buffer[..len]).map_err(|_| fmt::Error)?)
            }
        }
    }
}

impl EncodeLabel for Label<'_> {
    fn encode(&self, mut encoder: LabelEncoder) -> fmt::Result {
        let mut key = encoder.encode_label_key()?;
        key.write_str(self.0)?;
        let mut value = key.encode_label_value()?;
        self.1.write(&mut value)?;
        value.finish()
    }
}

/// The label values of the services and reals (addresses, ports), written
/// once per scrape into one string rather than for each of their samples.
struct Texts {
    arena: String,
    /// Per service: vip, port, protocol (a mark group: "", "0", `fwmark:N`).
    services: Vec<[Span; 3]>,
    /// Per real: address, port.
    reals: Vec<[Span; 2]>,
}

/// A piece of [`Texts::arena`].
type Span = (u32, u32);

impl Texts {
    fn new(frame: &Frame) -> Self {
        let mut arena = String::with_capacity(24 * (frame.services.len() + frame.reals.len()));
        let mut put = |value: &dyn fmt::Display| {
            let start = arena.len() as u32;
            // Writing to a String does not fail.
            let _ = write!(arena, "{value}");
            (start, arena.len() as u32)
        };
        let services = frame
            .services
            .iter()
            .map(|s| match s.key {
                ServiceKey::Inet {
                    protocol,
                    addr,
                    port,
                } => [put(&addr), put(&port), put(&protocol)],
                ServiceKey::Mark(mark) => [put(&""), put(&0), put(&format_args!("fwmark:{mark}"))],
            })
            .collect();
        let reals = frame
            .reals
            .iter()
            .map(|r| [put(&r.address), put(&r.port)])
            .collect();
        Texts {
            arena,
            services,
            reals,
        }
    }

    fn get(&self, (start, end): Span) -> &str {
        &self.arena[start as usize..end as usize]
    }
}

/// A service's labels: vip, port, protocol.
#[derive(Clone, Copy)]
struct ServiceLabels<'a>([&'a str; 3]);

impl EncodeLabelSet for ServiceLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        let [vip, port, protocol] = self.0;
        [
            Label("vip", Value::Text(vip)),
            Label("port", Value::Text(port)),
            Label("protocol", Value::Text(protocol)),
        ]
        .as_slice()
        .encode(encoder)
    }
}

/// A real's labels: its service's, then real, real_port, forward.
#[derive(Clone, Copy)]
struct RealLabels<'a> {
    service: ServiceLabels<'a>,
    key: &'a ServiceKey,
    address: &'a str,
    port: &'a str,
    forward: Forward,
}

impl EncodeLabelSet for RealLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        self.service.encode(encoder)?;
        [
            Label("real", Value::Text(self.address)),
            Label("real_port", Value::Text(self.port)),
            Label("forward", Value::Text(self.forward.name())),
        ]
        .as_slice()
        .encode(encoder)
    }
}

/// A real as node_exporter's IPVS collector labels it: a fwmark service by
/// its mark alone, the protocol in capitals.
struct IpvsLabels<'a>(RealLabels<'a>);

impl EncodeLabelSet for IpvsLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        let real = &self.0;
        let [vip, port, _] = real.service.0;
        let (mark, proto) = match *real.key {
            ServiceKey::Inet { protocol, .. } => (Value::Text(""), protocol.upper()),
            ServiceKey::Mark(mark) => (Value::Number(mark.into()), ""),
        };
        [
            Label("local_address", Value::Text(vip)),
            Label("local_port", Value::Text(port)),
            Label("local_mark", mark),
            Label("proto", Value::Text(proto)),
            Label("remote_address", Value::Text(real.address)),
            Label("remote_port", Value::Text(real.port)),
        ]
        .as_slice()
        .encode(encoder)
    }
}

/// A family read from one value of `T`: name, help, type, the reading.
type Spec<T> = (&'static str, &'static str, MetricType, fn(&T) -> u64);

/// One metric family being written.
struct Family<'a> {
    encoder: prometheus_client::encoding::MetricEncoder<'a>,
    kind: MetricType,
}

impl Family<'_> {
    fn sample(&mut self, labels: &impl EncodeLabelSet, value: f64) -> fmt::Result {
        let encoder = self.encoder.encode_family(labels)?;
        match self.kind {
            MetricType::Counter => ConstCounter::new(value as u64).encode(encoder),
            // Whole numbers as integers: `2`, not `2.0`.
            _ if value.fract() == 0.0 && value.abs() < 9e15 => {
                ConstGauge::new(value as i64).encode(encoder)
            }
            _ => ConstGauge::new(value).encode(encoder),
        }
    }
}

fn family<'a>(
    encoder: &'a mut DescriptorEncoder<'_>,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> Result<Family<'a>, fmt::Error> {
    Ok(Family {
        encoder: encoder.encode_descriptor(name, help, None, kind)?,
        kind,
    })
}

/// `rvs_{what}_packets_total` and `rvs_{what}_bytes_total`, in from
/// clients and out from the reals, one pair of samples per row.
fn directional<'a, L: EncodeLabelSet + Copy, I: Iterator<Item = (L, &'a RealTotals)>>(
    encoder: &mut DescriptorEncoder,
    what: &str,
    rows: impl Fn() -> I,
) -> fmt::Result {
    type Pick = fn(&RealTotals) -> (u64, u64);
    let families: [(&str, Pick); 2] = [
        ("packets", |t| (t.in_packets, t.out_packets)),
        ("bytes", |t| (t.in_bytes, t.out_bytes)),
    ];
    for (unit, pick) in families {
        let name = format!("rvs_{what}_{unit}");
        let help = format!(
            "{} of the {what}'s connections, in from clients and out from the reals.",
            if unit == "bytes" { "Bytes" } else { "Packets" }
        );
        let mut f = family(encoder, &name, &help, MetricType::Counter)?;
        for (labels, t) in rows() {
            let (inbound, outbound) = pick(t);
            f.sample(&(labels, [("direction", "in")]), inbound as f64)?;
            f.sample(&(labels, [("direction", "out")]), outbound as f64)?;
        }
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let sources = &self.sources;
        let frame = &self.frame;
        let totals: Vec<RealTotals> = frame
            .reals
            .iter()
            .map(|r| sources.book.totals(r.id))
            .collect();
        let mut per_service = vec![RealTotals::default(); frame.services.len()];
        for (row, t) in frame.reals.iter().zip(&totals) {
            let s = &mut per_service[row.service];
            s.conns += t.conns;
            s.in_packets += t.in_packets;
            s.in_bytes += t.in_bytes;
            s.out_packets += t.out_packets;
            s.out_bytes += t.out_bytes;
        }
        let services = || {
            frame
                .services
                .iter()
                .enumerate()
                .map(|(i, _)| self.service_labels(i))
                .zip(&per_service)
        };
        let reals = || {
            (0..frame.reals.len())
                .map(|i| self.real_labels(i))
                .zip(&totals)
        };

        // Services.
        let mut f = family(
            &mut encoder,
            "rvs_service_connections",
            "Connections scheduled by the service.",
            MetricType::Counter,
        )?;
        for (labels, t) in services() {
            f.sample(&labels, t.conns as f64)?;
        }
        directional(&mut encoder, "service", services)?;
        let mut f = family(
            &mut encoder,
            "rvs_service_reals",
            "Reals that may take a new connection (listed, weight above 0).",
            MetricType::Gauge,
        )?;
        for (i, s) in frame.services.iter().enumerate() {
            f.sample(&self.service_labels(i), s.usable as f64)?;
        }
        let mut f = family(
            &mut encoder,
            "rvs_service_quorum_up",
            "1 while a health-checked service has its quorum, 0 while its sorry server serves.",
            MetricType::Gauge,
        )?;
        for (i, s) in frame.services.iter().enumerate() {
            if let Some(up) = s.quorum_up {
                f.sample(&self.service_labels(i), f64::from(u8::from(up)))?;
            }
        }

        // Reals.
        let real_counters: [Spec<RealTotals>; 4] = [
            (
                "rvs_real_connections",
                "Connections scheduled to the real.",
                MetricType::Counter,
                |t| t.conns,
            ),
            (
                "rvs_real_active_connections",
                "The real's active connections (IPVS ActiveConn: TCP established).",
                MetricType::Gauge,
                |t| t.active,
            ),
            (
                "rvs_real_inactive_connections",
                "The real's inactive connections (IPVS InActConn).",
                MetricType::Gauge,
                |t| t.inactive,
            ),
            (
                "rvs_real_persistent_connections",
                "Persistence templates pointing at the real (IPVS PersistConn).",
                MetricType::Gauge,
                |t| t.persist,
            ),
        ];
        for (name, help, kind, pick) in real_counters {
            let mut f = family(&mut encoder, name, help, kind)?;
            for (labels, t) in reals() {
                f.sample(&labels, pick(t) as f64)?;
            }
        }
        let mut f = family(
            &mut encoder,
            "rvs_real_weight",
            "The weight the real schedules with (0: quiesced, drained or taken out).",
            MetricType::Gauge,
        )?;
        for (i, r) in frame.reals.iter().enumerate() {
            f.sample(&self.real_labels(i), f64::from(r.weight))?;
        }
        directional(&mut encoder, "real", reals)?;
        self.encode_health(&mut encoder)?;
        self.encode_workers(&mut encoder)?;
        self.encode_local_ports(&mut encoder)?;
        self.encode_ports(&mut encoder)?;
        self.encode_process(&mut encoder)?;
        if sources.ipvs_compat {
            self.encode_ipvs(&mut encoder, &totals)?;
        }
        Ok(())
    }
}

impl Scrape {
    /// The labels of service `index` of the frame.
    fn service_labels(&self, index: usize) -> ServiceLabels<'_> {
        ServiceLabels(self.texts.services[index].map(|span| self.texts.get(span)))
    }

    /// The labels of real `index` of the frame.
    fn real_labels(&self, index: usize) -> RealLabels<'_> {
        let row = &self.frame.reals[index];
        let [address, port] = self.texts.reals[index];
        RealLabels {
            service: self.service_labels(row.service),
            key: &self.frame.services[row.service].key,
            address: self.texts.get(address),
            port: self.texts.get(port),
            forward: row.forward,
        }
    }

    fn encode_health(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let frame = &self.frame;
        let health: Vec<RealMetrics> = self.sources.health.metrics();
        let by_key: std::collections::HashMap<_, &RealMetrics> =
            health.iter().map(|m| (m.key, m)).collect();
        let checked: Vec<(RealLabels, &RealMetrics)> = frame
            .reals
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let key = (frame.services[r.service].key, r.address, r.port);
                by_key.get(&key).map(|m| (self.real_labels(i), *m))
            })
            .collect();
        let mut f = family(
            encoder,
            "rvs_real_up",
            "1 while the real passes its health checks (a real without checks: always 1).",
            MetricType::Gauge,
        )?;
        for (i, r) in frame.reals.iter().enumerate() {
            f.sample(
                &self.real_labels(i),
                f64::from(u8::from(r.up.unwrap_or(true))),
            )?;
        }
        let mut f = family(
            encoder,
            "rvs_real_check_failures",
            "Health checks of the real that failed.",
            MetricType::Counter,
        )?;
        for (labels, m) in &checked {
            for c in &m.checkers {
                let kind = c.kind.to_string();
                f.sample(
                    &(*labels, [Label("checker", Value::Text(&kind))]),
                    c.failed as f64,
                )?;
            }
        }
        let mut f = family(
            encoder,
            "rvs_real_up_down",
            "Times the real went down or came back up by its health checks.",
            MetricType::Counter,
        )?;
        for (labels, m) in &checked {
            f.sample(labels, m.transitions as f64)?;
        }
        let mut histogram = encoder.encode_descriptor(
            "rvs_real_check_duration_seconds",
            "How long the real's health checks took.",
            None,
            MetricType::Histogram,
        )?;
        for (labels, m) in &checked {
            for c in &m.checkers {
                let kind = c.kind.to_string();
                let buckets: Vec<(f64, u64)> = DURATION_BUCKETS
                    .iter()
                    .copied()
                    .zip(c.buckets)
                    .chain(std::iter::once((f64::INFINITY, c.count)))
                    .collect();
                histogram
                    .encode_family(&(*labels, [Label("checker", Value::Text(&kind))]))?
                    .encode_histogram::<NoLabelSet>(c.sum, c.count, &buckets, None)?;
            }
        }
        Ok(())
    }

    fn encode_workers(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let reads: Vec<_> = self.sources.workers.iter().map(|w| w.read()).collect();
        let worker = |i: usize| [("worker", i)];
        let mut f = family(
            encoder,
            "rvs_worker_packets",
            "Packets a worker received (rx) and sent (tx).",
            MetricType::Counter,
        )?;
        for (i, c) in reads.iter().enumerate() {
            f.sample(&(worker(i), [("direction", "rx")]), c.rx_packets as f64)?;
            f.sample(&(worker(i), [("direction", "tx")]), c.tx_packets as f64)?;
        }
        let per_worker: [Spec<crate::counters::CountersSnapshot>; 5] = [
            (
                "rvs_worker_polls",
                "Rounds of a worker's loop (polls of all its queues).",
                MetricType::Counter,
                |c| c.polls,
            ),
            (
                "rvs_worker_busy_polls",
                "Rounds of a worker's loop that found work: busy / all polls is its load.",
                MetricType::Counter,
                |c| c.busy_polls,
            ),
            (
                "rvs_connections",
                "Connections a worker tracks now.",
                MetricType::Gauge,
                |c| c.conns_current,
            ),
            (
                "rvs_redirected_packets",
                "Packets a worker handed to the worker owning their connection.",
                MetricType::Counter,
                |c| c.redirected,
            ),
            (
                "rvs_connections_evicted",
                "Unverified connections ended early to make room for new ones.",
                MetricType::Counter,
                |c| c.conns_evicted,
            ),
        ];
        for (name, help, kind, pick) in per_worker {
            let mut f = family(encoder, name, help, kind)?;
            for (i, c) in reads.iter().enumerate() {
                f.sample(&worker(i), pick(c) as f64)?;
            }
        }
        let mut f = family(
            encoder,
            "rvs_connection_table_capacity",
            "Connections a worker's table holds at most.",
            MetricType::Gauge,
        )?;
        for i in 0..reads.len() {
            f.sample(&worker(i), self.sources.table_capacity as f64)?;
        }
        let mut f = family(
            encoder,
            "rvs_drops",
            "Packets a worker dropped, by reason.",
            MetricType::Counter,
        )?;
        for (i, c) in reads.iter().enumerate() {
            for reason in DropReason::ALL {
                let labels = (worker(i), [("reason", reason.name())]);
                f.sample(&labels, c.drops_of(reason) as f64)?;
            }
        }
        Ok(())
    }

    /// Per FullNAT local address the services list (or that connections
    /// still use) and worker: its ports in use and free.
    fn encode_local_ports(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let book = &self.sources.book.local;
        let rows: Vec<(usize, usize, u64, u64)> = book
            .workers
            .iter()
            .enumerate()
            .flat_map(|(worker, counters)| {
                let ports = counters.ports.load(Relaxed);
                counters
                    .in_use
                    .iter()
                    .enumerate()
                    .map(move |(i, used)| (worker, i, ports, used.load(Relaxed)))
            })
            .filter(|&(_, i, _, used)| {
                used > 0 || self.frame.local_addresses.contains(&book.addresses[i])
            })
            .collect();
        for (name, help, pick) in [
            (
                "rvs_local_ports_in_use",
                "FullNAT local ports of the address that a worker's connections use.",
                (|_, used| used) as fn(u64, u64) -> u64,
            ),
            (
                "rvs_local_ports_free",
                "FullNAT local ports of the address free on a worker (used by no connection).",
                |ports, used| ports.saturating_sub(used),
            ),
        ] {
            let mut f = family(encoder, name, help, MetricType::Gauge)?;
            for &(worker, i, ports, used) in &rows {
                let labels = (
                    [Label("local_address", Value::Address(book.addresses[i]))],
                    [("worker", worker)],
                );
                f.sample(&labels, pick(ports, used) as f64)?;
            }
        }
        Ok(())
    }

    fn encode_ports(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let stats: Vec<_> = self
            .sources
            .ports
            .iter()
            .map(|(name, device, handle)| {
                (
                    [("port", name.as_str()), ("device", device.as_str())],
                    handle.stats().unwrap_or_default(),
                )
            })
            .collect();
        type Pick = fn(&dpdk_sys::rte_eth_stats) -> u64;
        let port_counters: [(&str, &str, Pick); 7] = [
            (
                "rvs_port_rx_packets",
                "Packets the port received (PMD).",
                |s| s.ipackets,
            ),
            ("rvs_port_tx_packets", "Packets the port sent (PMD).", |s| {
                s.opackets
            }),
            ("rvs_port_rx_bytes", "Bytes the port received (PMD).", |s| {
                s.ibytes
            }),
            ("rvs_port_tx_bytes", "Bytes the port sent (PMD).", |s| {
                s.obytes
            }),
            (
                "rvs_port_rx_missed",
                "Packets the NIC dropped for lack of room in an RX queue.",
                |s| s.imissed,
            ),
            (
                "rvs_port_errors",
                "Erroneous packets, received and sent (PMD).",
                |s| s.ierrors + s.oerrors,
            ),
            (
                "rvs_port_rx_no_mbuf",
                "Receptions that failed for lack of a packet buffer.",
                |s| s.rx_nombuf,
            ),
        ];
        for (name, help, pick) in port_counters {
            let mut f = family(encoder, name, help, MetricType::Counter)?;
            for (labels, s) in &stats {
                f.sample(labels, pick(s) as f64)?;
            }
        }
        let kernel = &self.sources.kernel;
        let counters = &self.sources.kernel_counters;
        let mut f = family(
            encoder,
            "rvs_kernel_frames",
            "Frames through a port's kernel interface (the exception path): to and from \
             the kernel, and those dropped on the way.",
            MetricType::Counter,
        )?;
        for (port, interface, index) in kernel {
            let c = &counters[*index];
            for (direction, result, value) in [
                ("to_kernel", "passed", &c.to_kernel),
                ("to_kernel", "dropped", &c.to_kernel_dropped),
                ("from_kernel", "passed", &c.from_kernel),
                ("from_kernel", "dropped", &c.from_kernel_dropped),
            ] {
                let labels = [
                    ("port", port.as_str()),
                    ("interface", interface.as_str()),
                    ("direction", direction),
                    ("result", result),
                ];
                f.sample(&labels, value.load(Relaxed) as f64)?;
            }
        }
        Ok(())
    }

    fn encode_process(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let frame = &self.frame;
        let none: [(&str, &str); 0] = [];
        let mut f = family(
            encoder,
            "rvs_build_info",
            "rvsd's version and the DPDK it runs on (always 1).",
            MetricType::Gauge,
        )?;
        let dpdk = crate::dpdk::version();
        f.sample(
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("dpdk", dpdk.as_str()),
            ],
            1.0,
        )?;
        let gauges = [
            (
                "rvs_config_generation",
                "Configurations adopted since rvsd started.",
                frame.generation as f64,
            ),
            (
                "rvs_mbufs_free",
                "Packet buffers free in the pool.",
                frame.mbufs_free as f64,
            ),
            (
                "rvs_mbufs",
                "Packet buffers in the pool.",
                self.sources.mbufs as f64,
            ),
        ];
        for (name, help, value) in gauges {
            family(encoder, name, help, MetricType::Gauge)?.sample(&none, value)?;
        }
        let control = frame.control;
        for (name, help, value) in [
            (
                "rvs_control_requests",
                "Requests the control socket answered (rvsadm, rvsctl).",
                control.requests,
            ),
            (
                "rvs_control_errors",
                "Requests the control socket answered with an error (refused edits, \
                 malformed requests).",
                control.errors,
            ),
            (
                "rvs_control_clients_refused",
                "Control clients refused (permission, too many clients).",
                control.refused,
            ),
        ] {
            family(encoder, name, help, MetricType::Counter)?.sample(&none, value as f64)?;
        }
        if let Some((ok, at)) = frame.reload {
            family(
                encoder,
                "rvs_config_reload_success",
                "Whether the last reload (SIGHUP, rvsctl reload) was adopted.",
                MetricType::Gauge,
            )?
            .sample(&none, f64::from(u8::from(ok)))?;
            family(
                encoder,
                "rvs_config_reload_timestamp_seconds",
                "Unix time of the last reload.",
                MetricType::Gauge,
            )?
            .sample(&none, at)?;
        }
        Ok(())
    }

    /// node_exporter's IPVS collector's series, same names and labels.
    fn encode_ipvs(&self, encoder: &mut DescriptorEncoder, totals: &[RealTotals]) -> fmt::Result {
        let frame = &self.frame;
        let none: [(&str, &str); 0] = [];
        let mut all = RealTotals::default();
        for t in totals {
            all.conns += t.conns;
            all.in_packets += t.in_packets;
            all.out_packets += t.out_packets;
            all.in_bytes += t.in_bytes;
            all.out_bytes += t.out_bytes;
        }
        for (name, help, value) in [
            (
                "node_ipvs_connections",
                "The total number of connections made.",
                all.conns,
            ),
            (
                "node_ipvs_incoming_packets",
                "The total number of incoming packets.",
                all.in_packets,
            ),
            (
                "node_ipvs_outgoing_packets",
                "The total number of outgoing packets.",
                all.out_packets,
            ),
            (
                "node_ipvs_incoming_bytes",
                "The total amount of incoming data.",
                all.in_bytes,
            ),
            (
                "node_ipvs_outgoing_bytes",
                "The total amount of outgoing data.",
                all.out_bytes,
            ),
        ] {
            family(encoder, name, help, MetricType::Counter)?.sample(&none, value as f64)?;
        }
        for (name, help, pick) in [
            (
                "node_ipvs_backend_connections_active",
                "The current active connections by local and remote address.",
                (|t: &RealTotals| t.active) as fn(&RealTotals) -> u64,
            ),
            (
                "node_ipvs_backend_connections_inactive",
                "The current inactive connections by local and remote address.",
                |t: &RealTotals| t.inactive,
            ),
        ] {
            let mut f = family(encoder, name, help, MetricType::Gauge)?;
            for (i, t) in totals.iter().enumerate() {
                f.sample(&IpvsLabels(self.real_labels(i)), pick(t) as f64)?;
            }
        }
        let mut f = family(
            encoder,
            "node_ipvs_backend_weight",
            "The current backend weight by local and remote address.",
            MetricType::Gauge,
        )?;
        for (i, r) in frame.reals.iter().enumerate() {
            f.sample(&IpvsLabels(self.real_labels(i)), f64::from(r.weight))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
