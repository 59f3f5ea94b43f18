//! What one preheated object costs: bytes asked of the allocator (exact, by a counting
//! allocator) and resident memory (RSS from /proc, which includes allocator overhead and page
//! rounding), for the slot alone and for a broker-shaped object (1 KiB arena, two 4 KiB
//! buffers). Run: `cargo run --release -p starling-benches --example preheat_cost`.

use starling_alloc_count::{Counting, snapshot};
use starling_benches::ConnLike;
use starling_pool::{Pool, PoolConfig, Poolable};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A pooled object with no resources: what the pool's own bookkeeping costs.
struct Empty;
impl Poolable for Empty {
    fn reset(&mut self) {}
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn measure<T: Poolable>(label: &str, objects: usize, factory: impl FnMut() -> T + 'static) {
    let config = PoolConfig {
        initial_objects: objects,
        max_preheated_objects: objects,
        ..PoolConfig::default()
    };
    let (heap_before, rss_before) = (snapshot().live_bytes, rss_bytes());
    let pool = Pool::new(config, factory).expect("valid config");
    let (heap_after, rss_after) = (snapshot().live_bytes, rss_bytes());
    println!(
        "{label:<40} {objects:>7} objects: {:>8.1} B requested, {:>8.1} B RSS per object",
        (heap_after - heap_before) as f64 / objects as f64,
        (rss_after.saturating_sub(rss_before)) as f64 / objects as f64,
    );
    drop(pool);
}

fn main() {
    println!(
        "size_of::<ConnLike>() = {} B",
        std::mem::size_of::<ConnLike>()
    );
    measure("pool bookkeeping only (zero-sized T)", 100_000, || Empty);
    println!(
        "size_of::<starling::core::conn::Conn>() = {} B",
        std::mem::size_of::<starling::core::conn::Conn>()
    );
    measure("broker Conn (empty arena, buffers lent)", 100_000, || {
        starling::core::conn::Conn::new()
    });
    measure("Box<ConnLike> (1 KiB arena, 2 x 4 KiB)", 100_000, || {
        Box::new(ConnLike::new())
    });
}
