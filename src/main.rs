//! The `gitrev` binary: parse the command line and hand over to the library.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = gitrev::cli::Cli::parse();
    match gitrev::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("gitrev: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
