//! Pool benchmarks. Figures and method: `docs/pool.md`.
//!
//! - `acquire_release/pool`: one acquire + one release on a preheated pool of broker-shaped
//!   objects, against `acquire_release/fresh_alloc`, which builds and drops such an object.
//! - `preheat/1000_objects`: constructing 1000 objects (a pool created with 1000 initial).
//! - `preheat_step/default_budget`: one `preheat_step(256)` right after an expansion.
//! - `preheat_step` distribution: printed, not a criterion group: p50 / p99 / max of the
//!   steps while growing from 1024 to 100 000 objects, one acquisition and one step per loop
//!   tick, for an object that owns its buffers (`ConnLike`) and for the broker's real
//!   connection object.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group};
use starling_benches::ConnLike;
use starling_pool::{Pool, PoolConfig, Poolable, config::DEFAULT_PREHEAT_BUDGET_OBJECTS};

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

/// Every non-empty `preheat_step` while growing to the default cap, one acquisition and one
/// step per loop tick, timed; returns the step durations sorted.
fn preheat_steps<T: Poolable>(factory: impl FnMut() -> T + 'static) -> Vec<Duration> {
    let mut pool = Pool::new(PoolConfig::default(), factory).expect("valid config");
    let mut keys = Vec::with_capacity(100_000);
    let mut steps = Vec::new();
    for _ in 0..90_000 {
        keys.push(pool.acquire().expect("room"));
        let started = Instant::now();
        let built = pool.preheat_step(DEFAULT_PREHEAT_BUDGET_OBJECTS, 0);
        let took = started.elapsed();
        if built > 0 {
            steps.push(took);
        }
    }
    steps.sort();
    steps
}

fn report_preheat_steps<T: Poolable>(label: &str, factory: impl FnMut() -> T + Clone + 'static) {
    let mut runs: Vec<(Duration, Duration, Duration)> = (0..5)
        .map(|_| {
            let steps = preheat_steps(factory.clone());
            let at = |q: f64| steps[((steps.len() - 1) as f64 * q) as usize];
            (at(0.5), at(0.99), at(1.0))
        })
        .collect();
    runs.sort_by_key(|r| r.2);
    let (p50, p99, max) = runs[runs.len() / 2];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "preheat_step {label} (budget {DEFAULT_PREHEAT_BUDGET_OBJECTS}, 1024 -> 100000, run with the median max of 5): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; maxima of all runs: {:?}",
        ms(p50),
        ms(p99),
        ms(max),
        runs.iter()
            .map(|r| format!("{:.2}", ms(r.2)))
            .collect::<Vec<_>>()
    );
}

criterion_group!(benches, acquire_release, preheat);

fn main() {
    if std::env::args().any(|arg| arg == "--bench") {
        report_preheat_steps(
            "Box<ConnLike> (owns its buffers: 1 KiB arena + 2 x 4 KiB buffers)",
            || Box::new(ConnLike::new()),
        );
        report_preheat_steps("broker Conn (empty arena, buffers lent)", || {
            starling::core::conn::Conn::new()
        });
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
