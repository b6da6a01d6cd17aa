//! The `jupyter-mcp` binary: parse flags, build the service, map errors to exit codes.

use clap::Parser as _;
use jupyter_mcp::cli::{Cli, Command, Recover, Transport};
use jupyter_mcp::engine::{Engine, RecoverMode};

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = runtime.block_on(async {
        match real_main(cli).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
        }
    });
    // Kernels run in their own process groups and are not affected by leaving here.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}

async fn real_main(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => {
            args.shared.init_logging();
            if args.detach {
                // Own session and process group (connect --spawn): no terminal's signals.
                let _ = rustix::process::setsid();
            }
            let cwd = std::env::current_dir()?;
            let config = args.shared.config(&cwd, args.stop_kernels_on_exit)?;
            let config = jupyter_mcp::config::Config {
                auto_checkpoint: args.auto_checkpoint,
                auto_checkpoint_idle: args.auto_checkpoint_idle,
                transport: match args.transport {
                    Transport::Stdio => jupyter_mcp::config::ServerTransport::Stdio,
                    Transport::Http => jupyter_mcp::config::ServerTransport::Http,
                },
                kernel_pool: args.kernel_pool.min(64),
                kernels: jupyter_mcp::config::KernelLimits {
                    max_kernels: args.max_kernels.map(|n| n as usize),
                    cull_idle_after: args.cull_idle_after,
                    ..config.kernels
                },
                ..config
            };
            let mode = match args.recover {
                Recover::Interrupt => RecoverMode::Interrupt,
                Recover::Retry => RecoverMode::Retry,
            };
            let bind = (args.transport == Transport::Http).then_some(args.bind);
            jupyter_mcp::doctor::preflight(jupyter_mcp::doctor::server_scope(&config, bind, false))
                .await?;
            if args.transport == Transport::Http {
                let options = jupyter_mcp::http::HttpOptions {
                    bind: args.bind,
                    token: args.token.clone(),
                    allowed_origins: args.allowed_origins.clone(),
                    shutdown_grace: std::time::Duration::from_secs_f64(args.shutdown_grace),
                    recover: mode,
                };
                return jupyter_mcp::http::run(config, options).await;
            }
            let stop = config.stop_kernels_on_exit;
            let _lock = jupyter_mcp::lock::ServerLock::acquire(&config.data_dir)?;
            let engine = Engine::new(config)?;
            engine.start_storage_probe();
            let report = engine.recover(mode).await?;
            tracing::info!(?report, "recovered state from the previous run");
            engine.start_kernel_pool(engine.config().kernel_pool);
            engine.spawn_limit_tasks();
            let _auto_checkpoints = jupyter_mcp::checkpoint::auto::spawn(&engine);
            let volume = engine.config().volume;
            let _retention = jupyter_mcp::store::retention::spawn(
                engine.store().clone(),
                jupyter_mcp::store::retention::Retention {
                    max_age_days: volume.keep_executions_days,
                    max_count: volume.keep_executions,
                },
            );
            // SIGTERM / SIGINT end the session like a closed stdin does.
            let result = tokio::select! {
                r = jupyter_mcp::mcp::serve_stdio(engine.clone()) => r,
                _ = jupyter_mcp::run::signals::termination() => Ok(()),
            };
            jupyter_mcp::checkpoint::auto::on_shutdown(&engine, std::time::Duration::from_secs(30))
                .await;
            engine.shutdown(stop).await;
            result?;
            Ok(0)
        }
        Command::Run(args) => {
            args.shared.init_logging();
            let cwd = std::env::current_dir()?;
            let folder = cwd.join(&args.notebook).parent().map(|p| p.to_path_buf());
            let config = args.shared.config(&folder.unwrap_or(cwd), true)?;
            jupyter_mcp::doctor::preflight(jupyter_mcp::doctor::server_scope(&config, None, true))
                .await?;
            jupyter_mcp::run::run(args).await
        }
        Command::Connect(args) => {
            args.shared.init_logging();
            jupyter_mcp::connect::run(args).await
        }
        Command::Doctor(args) => {
            args.shared.init_logging();
            jupyter_mcp::doctor::run(&args).await
        }
    }
}
