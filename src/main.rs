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
    /// Write the whole configuration as a script of shell lines (`hubgate restore` runs it).
    Backup(BackupArgs),
    /// Run a backup script: after this node's first start, each object becomes what the
    /// script says; the first failing line stops it.
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
struct BackupArgs {
    #[command(flatten)]
    common: hubgate::config::Settings,
    /// Write here (mode 0600) instead of to stdout.
    #[arg(short = 'o', long = "output")]
    output: Option<std::path::PathBuf>,
    /// Carry smart-host passwords and account password hashes, sealed with the organisation
    /// key: only a node given the same key can restore them.
    #[arg(long)]
    include_secrets: bool,
}

#[derive(clap::Args)]
struct RestoreArgs {
    #[command(flatten)]
    common: hubgate::config::Settings,
    /// The script `hubgate backup` wrote.
    file: std::path::PathBuf,
    /// As for `serve`: the Administrator's password if this restore is the first start.
    #[arg(long, env = "HUBGATE_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// As for `serve`: the default connectors' bindings if this restore is the first start.
    #[arg(long, env = "HUBGATE_DEFAULT_BINDINGS")]
    default_bindings: Option<String>,
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
        Command::Backup(a) => runtime.block_on(backup(a)),
        Command::Restore(a) => return runtime.block_on(restore(a)),
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

async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let db = hubgate::db::Database::open(&args.common).await?;
    let key = if args.include_secrets {
        Some(
            hubgate::org::org_key::prepare(&db.pool, Some(&args.common.data_dir))
                .await
                .context("the organization key")?,
        )
    } else {
        None
    };
    // One snapshot: a change made while the backup reads is wholly in it or wholly not.
    let mut tx = db.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let script = hubgate::shell::backup::script(&mut tx, Some(&args.common.data_dir), key.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tx.rollback().await?;
    db.pool.close().await;
    match &args.output {
        None => {
            use std::io::Write;
            std::io::stdout().write_all(script.as_bytes())?;
        }
        Some(path) => {
            write_private(path, &script).with_context(|| format!("writing {}", path.display()))?
        }
    }
    Ok(())
}

/// Writes `text` to `path` as a new 0600 file, whole or not at all.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
    drop(f);
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

async fn restore(args: RestoreArgs) -> ExitCode {
    use hubgate::org::bootstrap::{self, FirstStart};
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("hubgate: {e}");
        ExitCode::FAILURE
    };
    let script = match std::fs::read_to_string(&args.file) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot read {}: {e}", args.file.display())),
    };
    let db = match hubgate::db::Database::open(&args.common).await {
        Ok(db) => db,
        Err(e) => return fail(&e),
    };
    let fqdn = args.common.fqdn();
    let split = args
        .default_bindings
        .as_deref()
        .map(hubgate::config::split_default_bindings);
    let first = FirstStart {
        server_name: &bootstrap::server_name_from_fqdn(&fqdn),
        fqdn: &fqdn,
        default_bindings: split
            .as_ref()
            .map(|s| s.0.clone())
            .filter(|v| !v.is_empty()),
        client_bindings: split
            .as_ref()
            .map(|s| s.1.clone())
            .filter(|v| !v.is_empty()),
        admin_password: args.admin_password.as_deref().filter(|p| !p.is_empty()),
    };
    match bootstrap::ensure_server(&db.pool, &first).await {
        Ok(Some(created)) => {
            if let Some(pw) = created.generated_password {
                println!("Administrator password (shown once): {pw}");
            }
        }
        Ok(None) => {}
        Err(e) => return fail(&e),
    }
    let mut sh = hubgate::shell::Shell::new(db.pool.clone(), &fqdn)
        .with_data_dir(args.common.data_dir.clone());
    sh.restore = true;
    let mut stdout = std::io::stdout();
    let r = sh.run_script(&script, &mut stdout).await;
    for w in sh.take_warnings() {
        eprintln!("{w}");
    }
    db.pool.close().await;
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err((line, e)) => {
            eprintln!("{}:{line}: {e}", args.file.display());
            ExitCode::FAILURE
        }
    }
}
