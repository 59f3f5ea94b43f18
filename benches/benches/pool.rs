//! Pool benchmarks (issue: the pool crate). Figures and method: `docs/pool.md`.
//!
//! - `acquire_release/pool`: one acquire + one release on a preheated pool of broker-shaped
//!   objects, against `acquire_release/fresh_alloc`, which builds and drops such an object.
//! - `preheat/1000_objects`: constructing 1000 objects (a pool created with 1000 initial).
//! - `preheat_step/default_budget`: one `preheat_step(256)` right after an expansion.
//! - `longest_preheat_step`: printed, not a criterion group: the slowest single step while
//!   growing from 1024 to 100 000 objects, one acquisition and one step per loop tick.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group};
use starling_benches::ConnLike;
use starling_pool::{Pool, PoolConfig, config::DEFAULT_PREHEAT_BUDGET_OBJECTS};

fn conn_pool(config: PoolConfig) -> Pool<Box<ConnLike>> {
    Pool::new(config, || Box::new(ConnLike::new())).expect("valid config")
}

fn acquire_release(c: &mut Criterion) {
    let mut group = c.benchmark_group("acquire_release");
    let mut pool = conn_pool(PoolConfig::default());
    group.bench_function("pool", |b| {
        b.iter(|| {
            let key = pool.acquire().expect("room");
            black_box(pool.get_mut(key).expect("live"));
            pool.release(key, 0).expect("live")
        })
    });
    group.bench_function("fresh_alloc", |b| {
        b.iter(|| {
            let conn = Box::new(ConnLike::new());
            drop(black_box(conn));
        })
    });
    group.finish();
}

fn preheat(c: &mut Criterion) {
    c.bench_function("preheat/1000_objects", |b| {
        b.iter_batched(
            || PoolConfig {
                initial_objects: 1000,
                ..PoolConfig::default()
            },
            conn_pool,
            BatchSize::PerIteration,
        )
    });
    c.bench_function("preheat_step/default_budget", |b| {
        b.iter_batched(
            || {
                let mut pool = conn_pool(PoolConfig::default());
                let keys: Vec<_> = (0..819).map(|_| pool.acquire().expect("room")).collect();
                (pool, keys)
            },
            |(mut pool, keys)| {
                black_box(pool.preheat_step(DEFAULT_PREHEAT_BUDGET_OBJECTS, 0));
                (pool, keys)
            },
            BatchSize::PerIteration,
        )
    });
}

/// The slowest single `preheat_step` while growing to the default cap, as the loop drives it.
fn longest_preheat_step() -> (Duration, usize) {
    let mut pool = conn_pool(PoolConfig::default());
    let mut keys = Vec::with_capacity(100_000);
    let mut longest = (Duration::ZERO, 0);
    for _ in 0..90_000 {
        keys.push(pool.acquire().expect("room"));
        let started = Instant::now();
        let built = pool.preheat_step(DEFAULT_PREHEAT_BUDGET_OBJECTS, 0);
        let took = started.elapsed();
        if took > longest.0 {
            longest = (took, pool.stats().live);
        }
        black_box(built);
    }
    longest
}

fn report_longest_preheat_step() {
    let mut runs: Vec<(Duration, usize)> = (0..5).map(|_| longest_preheat_step()).collect();
    runs.sort();
    let (median, live) = runs[runs.len() / 2];
    println!(
        "longest_preheat_step (budget {DEFAULT_PREHEAT_BUDGET_OBJECTS}, 1024 -> 100000, median of 5 runs): {:.3} ms (at {live} live objects); all runs: {:?}",
        median.as_secs_f64() * 1e3,
        runs.iter().map(|r| r.0).collect::<Vec<_>>()
    );
}

criterion_group!(benches, acquire_release, preheat);

fn main() {
    if std::env::args().any(|arg| arg == "--bench") {
        report_longest_preheat_step();
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
