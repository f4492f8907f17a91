//! The `hubgate` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hubgate",
    version,
    about = "A mail gateway with Exchange Hub/Edge transport semantics"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: SMTP receive connectors and the console.
    Serve(hubgate::config::ServeSettings),
    /// The management shell: Exchange Management Shell cmdlets over the organisation.
    Shell(ShellArgs),
}

#[derive(clap::Args)]
struct ShellArgs {
    #[command(flatten)]
    common: hubgate::config::Settings,
    /// Run one line and exit.
    #[arg(short = 'c', long = "command", conflicts_with = "file")]
    command: Option<String>,
    /// Run a script and exit; the first failing line stops it.
    #[arg(short = 'f', long = "file")]
    file: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The gateway logs to stdout, as a container's log collector expects; the shell's stdout is
    // its output, so there the log stays on stderr.
    let to_stdout = matches!(cli.command, Command::Serve(_));
    if let Err(e) = init_log(to_stdout) {
        eprintln!("hubgate: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hubgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(s) => runtime.block_on(hubgate::app::serve(s)),
        Command::Shell(a) => return shell(&runtime, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hubgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// tracing's output: HUBGATE_LOG filters it (default `info,sqlx=warn`), HUBGATE_LOG_FORMAT picks
/// `text` (the default) or `json` (one object per line).
fn init_log(to_stdout: bool) -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUBGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let (writer, terminal) = if to_stdout {
        (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        )
    } else {
        (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        )
    };
    let format = std::env::var("HUBGATE_LOG_FORMAT").unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(writer);
    match format.trim().to_ascii_lowercase().as_str() {
        "" | "text" => builder.init(),
        "json" => builder.json().init(),
        other => {
            return Err(format!(
                "HUBGATE_LOG_FORMAT: '{other}' is not a log format; use text or json"
            ));
        }
    }
    Ok(())
}

fn shell(runtime: &tokio::runtime::Runtime, args: ShellArgs) -> ExitCode {
    use hubgate::shell::Shell;
    let db = match runtime.block_on(hubgate::db::Database::open(&args.common)) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("hubgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sh = Shell::new(db.pool.clone(), &args.common.fqdn())
        .with_data_dir(args.common.data_dir.clone());
    let ok = if let Some(line) = &args.command {
        let ok = match runtime.block_on(sh.run_line(line)) {
            Ok(out) => {
                print!("{out}");
                true
            }
            Err(e) => {
                eprintln!("{e}");
                false
            }
        };
        for w in sh.take_warnings() {
            eprintln!("{w}");
        }
        ok
    } else if let Some(path) = &args.file {
        match std::fs::read_to_string(path) {
            Err(e) => {
                eprintln!("hubgate: cannot read {}: {e}", path.display());
                false
            }
            Ok(script) => {
                let mut stdout = std::io::stdout();
                let ok = match runtime.block_on(sh.run_script(&script, &mut stdout)) {
                    Ok(()) => true,
                    Err((line, e)) => {
                        eprintln!("{}:{line}: {e}", path.display());
                        false
                    }
                };
                for w in sh.take_warnings() {
                    eprintln!("{w}");
                }
                ok
            }
        }
    } else {
        interactive(runtime, &mut sh)
    };
    // The private cluster belongs to the gateway: a running `serve` is using it, and a later one
    // reuses it, so the shell only closes its own connections.
    runtime.block_on(db.pool.close());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The prompt loop; errors are printed and the session goes on, as in PowerShell.
fn interactive(runtime: &tokio::runtime::Runtime, sh: &mut hubgate::shell::Shell) -> bool {
    use rustyline::error::ReadlineError;
    let mut ed = match hubgate::shell::interactive::editor() {
        Ok(ed) => ed,
        Err(e) => {
            eprintln!("hubgate: cannot start the line editor: {e}");
            return false;
        }
    };
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".hubgate_history"));
    if let Some(h) = &history {
        let _ = ed.load_history(h);
    }
    let prompt = format!("[PS] {}> ", sh.server);
    loop {
        match ed.readline(&prompt) {
            Ok(line) => {
                if line.trim().eq_ignore_ascii_case("exit") {
                    break;
                }
                if !line.trim().is_empty() {
                    let _ = ed.add_history_entry(line.as_str());
                }
                match runtime.block_on(sh.run_line(&line)) {
                    Ok(out) => print!("{out}"),
                    Err(e) => eprintln!("{e}"),
                }
                for w in sh.take_warnings() {
                    eprintln!("{w}");
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("hubgate: {e}");
                return false;
            }
        }
    }
    if let Some(h) = &history {
        let _ = ed.save_history(h);
    }
    true
}
