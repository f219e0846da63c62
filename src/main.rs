use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sesame::cli::Cli::parse();
    match sesame::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
