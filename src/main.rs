//! The `rampart` binary: parse the command line and dispatch. Everything else is in the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    rampart::install_crypto_provider();
    rampart::cli::run(rampart::cli::Cli::parse())
}
