//! The `rampart` binary: parse the command line and dispatch. Everything else is in the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rampart::install_crypto_provider();
    rampart::cli::run(rampart::cli::Cli::parse())
}
