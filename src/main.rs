//! The `rampart` binary: parse the command line and dispatch. Everything else is in the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// mimalloc, built with `no_thp`: it does not ask for transparent huge pages, which on kernels in
/// `madvise` THP mode made every touched arena region resident 2 MiB at a time (idle RSS 26 MiB
/// instead of 13, 50 MiB instead of 26 under load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rampart::install_crypto_provider();
    rampart::cli::run(rampart::cli::Cli::parse())
}
