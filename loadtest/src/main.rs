//! The `starling-loadtest` binary: parses the flags, runs the scenario, prints the report
//! (a table on stderr and, with `--json`, JSON on stdout; without `--json` the table goes
//! to stdout) and exits non-zero with a one-line reason when the run cannot be done.

use clap::Parser;
use starling_loadtest::alloc_count::CountingAlloc;
use starling_loadtest::cli::Args;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    let args = Args::parse();
    match starling_loadtest::run(&args) {
        Ok(report) => {
            if args.json {
                eprint!("{}", report.human());
                println!("{}", report.json());
            } else {
                print!("{}", report.human());
            }
        }
        Err(error) => {
            eprintln!("starling-loadtest: {error}");
            std::process::exit(error.exit_code());
        }
    }
}
