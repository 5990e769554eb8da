//! `host`: train, evaluate and ship an MLP. See `host --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = host::cli::Cli::parse();
    match host::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<host::cli::Interrupted>().is_some() => {
            eprintln!("{e}");
            std::process::ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
