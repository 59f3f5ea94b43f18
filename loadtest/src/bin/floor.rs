//! The `starling-floor` binary: the least any MQTT server must do per connection (see
//! [`starling_loadtest::floor`]), for measuring a machine's ceiling in the `conn` and
//! `churn` scenarios.

use std::net::SocketAddr;

use clap::Parser;

/// A measuring stick, not a broker: accepts MQTT clients on `--listen`, answers CONNECT
/// with CONNACK 0, SUBSCRIBE with SUBACK (QoS 0 granted), PINGREQ with PINGRESP, drops
/// PUBLISH, keeps no sessions. Runs until stopped.
#[derive(Parser, Debug)]
#[command(name = "starling-floor", version)]
struct Args {
    /// Address to listen on (loopback for load tests).
    #[arg(long, default_value = "127.0.0.1:1884")]
    listen: SocketAddr,
    /// Threads, each with its own SO_REUSEPORT listener and poll loop. [default: cores]
    #[arg(long)]
    threads: Option<usize>,
}

fn main() {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let Err(e) = starling_loadtest::floor::serve(args.listen, threads) {
        eprintln!("starling-floor: {e}");
        std::process::exit(1);
    }
}
