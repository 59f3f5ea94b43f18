//! The broker's metrics endpoint, for tests that wait on what the broker has counted rather
//! than on a sleep (a message routed to another loop, a refusal still in the accept queue).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{Broker, READ_TIMEOUT, free_port};

/// Start attempts (the free metrics port can be taken before the broker binds it).
const MONITORED_START_ATTEMPTS: usize = 3;
/// How often a wait on a metric asks again.
const METRIC_POLL: Duration = Duration::from_millis(20);

impl Broker {
    /// Like [`Broker::start`], with the metrics endpoint on a free loopback port.
    pub fn start_monitored(args: &[&str]) -> Broker {
        let mut last = String::new();
        for _ in 0..MONITORED_START_ATTEMPTS {
            let metrics: SocketAddr = format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("loopback address");
            let listen = metrics.to_string();
            let mut all = vec!["--metrics-listen", listen.as_str()];
            all.extend_from_slice(args);
            let mut broker = Broker::start(&all);
            if broker.log_shows("metrics and health listening") {
                broker.metrics = Some(metrics);
                return broker;
            }
            last = broker.log_text();
        }
        panic!("the metrics endpoint did not start:\n{last}");
    }

    /// The sum of the samples of `name` whose labels include all of `labels` (0 if none).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics_text();
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                let matches = metric == name && wanted.iter().all(|w| rest.contains(w.as_str()));
                matches.then(|| value.parse::<f64>().ok()).flatten()
            })
            .sum()
    }

    /// Waits up to [`READ_TIMEOUT`] × 2 until `done` holds for [`Broker::metric`]'s reader;
    /// returns whether it did.
    pub fn wait_metrics(&self, mut done: impl FnMut(&Broker) -> bool) -> bool {
        let deadline = Instant::now() + READ_TIMEOUT * 2;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(METRIC_POLL);
        }
    }

    /// `GET /metrics`.
    pub fn metrics_text(&self) -> String {
        let addr = self.metrics.expect("started with Broker::start_monitored");
        let mut stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT).expect("metrics connect");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("read timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            .expect("metrics request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("metrics response");
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_string()
    }
}
