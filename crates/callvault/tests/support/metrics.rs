//! Reading the daemon's Prometheus endpoint.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::config::TestConfig;

/// Fetches `path` from the endpoint with `method`; returns the status line and body.
pub(crate) fn fetch(address: SocketAddr, method: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("the metrics endpoint accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("an answer");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// The whole exported text of the daemon running on `config`.
pub(crate) fn scrape(config: &TestConfig) -> String {
    let (status, body) = fetch(config.metrics_listen, "GET", "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    body
}

/// The value of one series, such as `name{label="x"}`, in a scrape.
pub(crate) fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} is not in the scrape:\n{page}"))
        .parse()
        .unwrap_or_else(|error| panic!("{series}: {error}"))
}

/// The series `name{label="value"}`.
pub(crate) fn labelled(name: &str, label: &str, value: &str) -> String {
    format!("{name}{{{label}=\"{value}\"}}")
}
