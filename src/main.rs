//! The `botfleet` command: serve (the default), migrate, run one pass, mint a token, check or
//! export the schedule.

mod cli;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use botfleet::bots::{self, Registry};
use botfleet::clock::SystemClock;
use botfleet::config::{Config, LogFormat};
use botfleet::engine::{TriggerOutcome, TriggerRequest};
use botfleet::schedule::{self, Schedules};
use botfleet::secrets::{self, Origin};
use botfleet::state::AppState;
use botfleet::{assemble, store, Parts};

use cli::Command;

/// Exit codes: 0 done; 1 a pass failed or timed out; 2 bad usage or configuration; 3 the
/// database could not be reached or migrated; 4 the address could not be bound.
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("botfleet: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("botfleet {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("botfleet: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let registry = bots::registry();

    match command {
        Command::CronsCheck { file } => crons_check(&config, file, &registry),
        Command::CronsExport { format, file } => crons_export(&config, file, &registry, &format),
        Command::Token { role, ttl, sub } => token(&config, role, ttl, &sub),
        other => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async_main(config, registry, other))
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&config.log_level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn load_schedules(
    config: &Config,
    file: Option<std::path::PathBuf>,
    registry: &Registry,
) -> Result<Schedules, String> {
    let path = file.or_else(|| config.crons_file.clone());
    schedule::load(path.as_deref(), &registry.names())
}

fn crons_check(config: &Config, file: Option<std::path::PathBuf>, registry: &Registry) -> ExitCode {
    match load_schedules(config, file, registry) {
        Ok(s) => {
            let now = chrono::Utc::now();
            println!("{}: valid", s.source);
            for (bot, sch) in s.entries() {
                println!(
                    "  {bot:<14} {:<14} next {}",
                    sch.expr,
                    sch.next_after(now).format("%Y-%m-%dT%H:%M:%SZ")
                );
            }
            for name in registry.names() {
                if s.get(name).is_none() {
                    println!("  {name:<14} (not scheduled: runs only when called)");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("botfleet: {e}");
            ExitCode::from(2)
        }
    }
}

fn crons_export(
    config: &Config,
    file: Option<std::path::PathBuf>,
    registry: &Registry,
    format: &str,
) -> ExitCode {
    let schedules = match load_schedules(config, file, registry) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("botfleet: {e}");
            return ExitCode::from(2);
        }
    };
    let max_time = config.bot_timeout_ms.div_ceil(1000) + 15;
    match botfleet::crons_export::export(&schedules, format, max_time) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("botfleet: {e}");
            ExitCode::from(2)
        }
    }
}

fn token(
    config: &Config,
    role: botfleet::auth::Role,
    ttl: chrono::Duration,
    sub: &str,
) -> ExitCode {
    let loaded = match secrets::load_or_generate(config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("botfleet: {e}");
            return ExitCode::from(2);
        }
    };
    let keys = botfleet::auth::AuthKeys::new(&loaded.secrets);
    println!("{}", keys.mint(sub, role, ttl, chrono::Utc::now()));
    ExitCode::SUCCESS
}

async fn start(
    config: Config,
    registry: Registry,
    schedules: Schedules,
) -> Result<AppState, ExitCode> {
    let loaded = secrets::load_or_generate(&config).map_err(|e| {
        eprintln!("botfleet: {e}");
        ExitCode::from(2)
    })?;
    for (what, origin) in [
        ("CRON_SECRET", &loaded.cron_origin),
        ("JWT_SECRET", &loaded.jwt_origin),
    ] {
        match origin {
            Origin::Generated(path) => tracing::warn!(
                "{what} was not set: generated one into {} (readable by this user only)",
                path.display()
            ),
            Origin::File(path) => tracing::info!("{what} read from {}", path.display()),
            Origin::Environment => {}
        }
    }
    let store = store::connect(&config.database_url, config.database_max_connections)
        .await
        .map_err(|e| {
            eprintln!("botfleet: {e} (DATABASE_URL)");
            ExitCode::from(3)
        })?;
    assemble(Parts {
        config,
        store,
        clock: Arc::new(SystemClock),
        bots: registry,
        schedules,
        secrets: loaded.secrets,
    })
    .await
    .map_err(|e| {
        eprintln!("botfleet: cannot prepare the database: {e}");
        ExitCode::from(3)
    })
}

async fn async_main(config: Config, registry: Registry, command: Command) -> ExitCode {
    let schedules = match load_schedules(&config, None, &registry) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("botfleet: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Migrate => {
            let store =
                match store::connect(&config.database_url, config.database_max_connections).await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("botfleet: {e} (DATABASE_URL)");
                        return ExitCode::from(3);
                    }
                };
            match store.migrate().await {
                Ok(applied) if applied.is_empty() => println!("the database is up to date"),
                Ok(applied) => println!("applied: {}", applied.join(", ")),
                Err(e) => {
                    eprintln!("botfleet: {e}");
                    return ExitCode::from(3);
                }
            }
            store.close().await;
            ExitCode::SUCCESS
        }
        Command::Run {
            bot,
            dry_run,
            force,
        } => {
            let state = match start(config, registry, schedules).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let mut request = TriggerRequest::new(&bot, "cli");
            request.dry_run = dry_run;
            request.force = force;
            let code = match state.engine.trigger(request).await {
                Ok(TriggerOutcome::Report(r)) => {
                    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                    if r.status == "success" {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Ok(TriggerOutcome::Skipped(s)) => {
                    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(TriggerOutcome::Replayed(v)) => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(TriggerOutcome::Accepted { execution_id }) => {
                    println!("{execution_id}");
                    ExitCode::SUCCESS
                }
                Err(botfleet::engine::EngineError::UnknownBot(name)) => {
                    eprintln!(
                        "botfleet: there is no bot named {name:?}; known bots: {}",
                        state.bots.names().join(", ")
                    );
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("botfleet: {e}");
                    ExitCode::from(3)
                }
            };
            state.store.close().await;
            code
        }
        Command::Serve { scheduler } => {
            let scheduler = scheduler || config.scheduler_internal;
            let bind = config.bind_addr;
            let data_dir = config.data_dir.clone();
            let state = match start(config, registry, schedules).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            serve(state, bind, scheduler, data_dir).await
        }
        Command::Help
        | Command::Version
        | Command::Token { .. }
        | Command::CronsCheck { .. }
        | Command::CronsExport { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
}

async fn serve(
    state: AppState,
    bind: SocketAddr,
    scheduler: bool,
    data_dir: std::path::PathBuf,
) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "botfleet: cannot listen on {bind}: {e}; set BIND_ADDR (or PORT) to a free address"
            );
            return ExitCode::from(4);
        }
    };
    let addr = listener.local_addr().unwrap_or(bind);
    if let Err(e) = state.engine.sweep().await {
        tracing::warn!(error = %e, "could not check for abandoned passes");
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // Leases that expire with nobody calling again are still marked abandoned; target history
    // is folded once an hour.
    let sweeper = {
        let engine = state.engine.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut last_fold: Option<std::time::Instant> = None;
            loop {
                if last_fold.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                    match engine.fold_history().await {
                        Ok(_) => last_fold = Some(std::time::Instant::now()),
                        Err(e) => tracing::warn!(error = %e, "folding target history failed"),
                    }
                    if let Err(e) = engine.prune_security().await {
                        tracing::warn!(error = %e, "pruning expired blocks, request counts and old audit entries failed");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                    _ = stop.changed() => return,
                }
                if let Err(e) = engine.sweep().await {
                    tracing::warn!(error = %e, "sweep for abandoned passes failed");
                }
                let now = engine.clock.now();
                if let Err(e) = botfleet::security::flush_counts(
                    &engine.process.addresses,
                    engine.store.as_ref(),
                    now,
                )
                .await
                {
                    tracing::warn!(error = %e, "request counts could not be written");
                }
            }
        })
    };
    let scheduler_task =
        scheduler.then(|| tokio::spawn(botfleet::scheduler::run(state.clone(), stop_rx.clone())));

    let secret_hint = match &state.config.cron_secret {
        Some(_) => "$CRON_SECRET".to_string(),
        None => format!(
            "$(cat {})",
            secrets::secrets_dir(&data_dir)
                .join("cron_secret")
                .display()
        ),
    };
    tracing::info!(
        address = %addr,
        backend = state.store.backend().as_str(),
        scheduler = if scheduler { "internal" } else { "external" },
        "botfleet is serving; try: curl -H \"Authorization: Bearer {secret_hint}\" http://{addr}/api/bots/pulse"
    );

    let app = botfleet::app(state.clone());
    let service = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
        SocketAddr,
    >(app);
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(async {
            shutdown_signal().await;
            tracing::info!("shutting down: no new requests; letting running passes finish");
        })
        .await;
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
    if let Some(t) = scheduler_task {
        let _ = t.await;
    }
    if !state.engine.drain(Duration::from_secs(30)).await {
        tracing::warn!("some background passes were still running; their leases will expire and mark them abandoned");
    }
    state.store.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("botfleet: the server stopped: {e}");
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
