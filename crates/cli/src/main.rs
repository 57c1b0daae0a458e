//! `lifeline`: the headless face of the engine. Parses the command line, runs one command and
//! maps the outcome to an exit code: 0 ok, 1 failure, 2 bad input or usage.

mod args;
mod commands;
mod fleet;
mod link;
mod report;
mod serve;
mod webhook;
mod words;

use std::process::ExitCode;

use clap::Parser;

/// Folds clap's multi-line usage error into the one-line form every other error has.
fn one_line(rendered: &str) -> String {
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect();
    format!("{} — see `lifeline --help`.", parts.join(" "))
}

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: clap prints them to stdout and exits 0.
            e.exit();
        }
        Err(e) => {
            eprintln!("lifeline: {}", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LIFELINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    if lifeline_runtime::TEST_PEER_BUILD {
        eprintln!(
            "lifeline: TEST-PEER BUILD — accepts the offline peer's unsigned certificates; never use it with real WhatsApp."
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lifeline: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lifeline: {e}");
            ExitCode::from(if e.is_input() { 2 } else { 1 })
        }
    }
}
