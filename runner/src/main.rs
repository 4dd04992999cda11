//! `flash-local`: the local runner.
//!
//!   flash-local serve [--migrate] [--demo]   serve every route on LISTEN_ADDR (+ GET /metrics)
//!   flash-local token USER [admin]           print a token the runner accepts (24 h)
//!   flash-local wiring                       print routes, functions, queues, schedules (JSON)
//!   flash-local setup [--demo]               apply migrations (and warm the demo sale), exit
//!
//! Reads the same environment variables as the Lambda functions (see README), plus
//! LISTEN_ADDR (default 127.0.0.1:3000) and LOCAL_JWT_SECRET.

#![recursion_limit = "256"] // the futures that reach the library's rebuild paths nest deeply (release builds)

use std::{sync::Arc, time::Duration};

use runner::{App, auth::JwtCheck, events, wiring::Settings};
use shared::{
    config::{self, LocalConfig},
    mysql::Db,
    telemetry::metrics::{Registry, Sink},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One process serves every function here, allocation-heavy per request (HTTP, the event, JSON);
/// the benchmark's profile showed glibc malloc/free at about a fifth of the runner's time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    shared::telemetry::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("token") => {
            let user = args.get(1).ok_or("usage: flash-local token USER [admin]")?;
            let scope = args.get(2).map(String::as_str);
            println!(
                "{}",
                runner::auth::mint(config::local_jwt_secret()?.as_bytes(), user, scope, Duration::from_secs(86_400))?
            );
            Ok(())
        }
        Some("wiring") => {
            // The schedules' rate as configured (60 s unless OUTBOX_RETRY_EVERY_SECS says otherwise).
            let every = LocalConfig::from_env()?.schedule_every;
            println!("{}", serde_json::to_string_pretty(&runner::wiring::manifest(every))?);
            Ok(())
        }
        Some("setup") => {
            // Migrations and (with --demo) the demo sale, then exit: for scripts that invoke
            // the functions one by one (deploy/lambda_check.sh).
            let settings = Settings::from_env()?;
            Db::create_and_migrate(&settings.core.mysql.options).await?;
            if args.iter().any(|a| a == "--demo") {
                let sale = shared::sale::connect(&settings.core, "runner").await?;
                let (product_id, activity_id) = runner::demo::ensure(&sale).await?;
                println!("demo sale: product {product_id}, activity {activity_id}");
            }
            Ok(())
        }
        Some("serve") | None => serve(&args).await,
        Some(other) => Err(format!("unknown command {other:?}; try serve or token").into()),
    }
}

async fn serve(args: &[String]) -> Result<(), BoxError> {
    let jwt = JwtCheck::hs256(config::local_jwt_secret()?.as_bytes());
    let mut settings = Settings::from_env()?;
    // Every function hosted here feeds one registry, which `/metrics` renders (the EMF lines
    // the functions print in Lambda, counted the same way).
    settings.core.metrics.sink = Sink { stdout: false, registry: Some(Arc::new(Registry::default())), capture: None };
    if args.iter().any(|a| a == "--migrate") {
        Db::create_and_migrate(&settings.core.mysql.options).await?;
        tracing::info!("migrations applied");
    }
    let local = &settings.local;
    let app = App::new(settings.build().await?, jwt, local.web_dir.clone())
        .with_throttle(local.throttle_rate, local.throttle_burst.max(local.throttle_rate))
        .with_cors(runner::cors::Cors::new(config::cors_allowed_origins()?));
    let app = Arc::new(app);
    if args.iter().any(|a| a == "--demo") {
        let (product_id, activity_id) = runner::demo::ensure(&app.stock_query.sale).await?;
        tracing::info!(product_id, activity_id, "demo sale warmed");
    }
    let sqs = settings.poller_client().await;
    for source in settings.event_sources() {
        tracing::info!(queue = %source.queue_url, pollers = source.concurrency, "event source mapping");
        events::start(app.clone(), sqs.clone(), source);
    }
    events::schedule(app.clone(), events::Scheduled::OutboxRetry, settings.local.schedule_every);
    events::schedule(app.clone(), events::Scheduled::Warmup, settings.local.schedule_every);
    let listen = &settings.local.listen_addr;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "local runner listening");
    runner::serve(listener, app).await;
    Ok(())
}
