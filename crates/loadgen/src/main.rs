//! `voltage-loadgen`: parses arguments, runs the load on one thread, prints the report.

use std::process::ExitCode;

use clap::Parser as _;
use voltage_loadgen::cli::{self, LoadArgs};

fn main() -> ExitCode {
    let args = LoadArgs::parse();
    init_tracing();
    match run(args) {
        Ok(report) => match cli::print(&report) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write the report: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: LoadArgs) -> anyhow::Result<String> {
    // One thread: the generator shares the machine with what it measures, and a single thread
    // spends nothing on waking another (it needs well under one core).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(cli::run(args))
}

/// Levels from `RUST_LOG` (default `info`), lines on stderr: stdout carries the report.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
