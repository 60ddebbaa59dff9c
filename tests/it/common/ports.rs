//! Ports for servers that must be told their port before they bind
//! (redis-server, an app whose redirect URI is registered first), and ports
//! nothing listens on.
//!
//! They come from outside the kernel's ephemeral range, where ports handed
//! out for port 0 never land: another test's listener cannot take one
//! between the pick and the bind.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A free 127.0.0.1 port outside the ephemeral range; picks in this process
/// never repeat until the band is used up.
pub fn port_to_bind_later() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let band = band_outside(ephemeral_range());
    // Where a run starts differs by process, so two runs rarely meet.
    let start = (std::process::id() as usize).wrapping_mul(7_919);
    for _ in 0..band.len() {
        let at = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % band.len();
        let port = band.start + at as u16;
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(_) => return port,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => panic!("cannot bind 127.0.0.1:{port}: {e}"),
        }
    }
    panic!("every port in {band:?} is in use");
}

/// A 127.0.0.1 address nothing listens on.
pub fn closed_port() -> String {
    format!("127.0.0.1:{}", port_to_bind_later())
}

/// The kernel's ephemeral range (Linux's default where it cannot be read).
fn ephemeral_range() -> (u16, u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let mut bounds = range
        .iter()
        .flat_map(|r| r.split_whitespace().map(str::parse));
    match (bounds.next(), bounds.next()) {
        (Some(Ok(low)), Some(Ok(high))) => (low, high),
        _ => (32768, 60999),
    }
}

/// The larger of the bands below (from 10,000) and above `(low, high)`.
fn band_outside((low, high): (u16, u16)) -> Range<u16> {
    let below = 10_000..low.max(10_000);
    let above = high.saturating_add(1).max(10_000)..u16::MAX;
    let band = if below.len() >= above.len() {
        below
    } else {
        above
    };
    assert!(
        band.len() >= 1_000,
        "no 1,000 ports outside the ephemeral range {low}-{high} \
         (net.ipv4.ip_local_port_range) for the tests' servers"
    );
    band
}

#[test]
fn bands_lie_outside_the_ephemeral_range() {
    assert_eq!(band_outside((32768, 60999)), 10_000..32768);
    assert_eq!(band_outside((1024, 60999)), 61000..65535);
    assert_eq!(band_outside((49152, 65535)), 10_000..49152);
    let all = std::panic::catch_unwind(|| band_outside((1024, 65000)));
    assert!(all.is_err(), "a band of {all:?}");
}

#[test]
fn picks_are_free_outside_the_ephemeral_range_and_never_repeat() {
    let band = band_outside(ephemeral_range());
    let picks: Vec<u16> = (0..50).map(|_| port_to_bind_later()).collect();
    let _servers: Vec<_> = picks
        .iter()
        .map(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).unwrap())
        .collect();
    assert!(picks.iter().all(|p| band.contains(p)), "{picks:?}");
    let mut distinct = picks.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), picks.len(), "{picks:?}");
}
