//! `rheo-operator`: `crd` prints the CRD; `run` (the default) runs the controller.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{ArgAction, Parser, Subcommand};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use rheo_operator::jobmanager::RestJobManagers;
use rheo_operator::leader::LeaderElector;
use rheo_operator::metrics::{self, Metrics};
use rheo_operator::reconcile::Context;
use rheo_operator::telemetry::{self, LogFormat};
use rheo_operator::{controller, crd};
use tracing::{error, info};

#[derive(Parser)]
#[command(name = "rheo-operator", version, about = "Runs Rheo FlinkJobs on Kubernetes")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print the FlinkJob CustomResourceDefinition (YAML).
    Crd,
    /// Run the controller (the default).
    Run(RunArgs),
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',', default_value = "")]
    watch_namespaces: Vec<String>,
    /// Act only while holding the leader Lease.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "rheo-operator-leader")]
    lease_name: String,
    /// Namespace of the leader Lease (default: the client's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Log format; the level comes from RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", crd::crd_yaml());
            Ok(())
        }
        Some(Command::Run(args)) => run(args).await,
        None => run(cli.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    // kube's TLS uses ring and reqwest's aws-lc-rs: with two providers compiled in, rustls picks
    // none and the first connection panics ("Could not automatically determine the process-level
    // CryptoProvider"), found on the real cluster. Choose ring explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let namespaces: Vec<String> =
        args.watch_namespaces.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let metrics = Arc::new(Metrics::default());
    let http = tokio::spawn(metrics::serve(args.http_addr, metrics.clone()));
    info!(addr = %args.http_addr, "serving /metrics, /healthz, /readyz");

    let client = Client::try_default().await.context("cannot configure a Kubernetes client")?;
    let identity =
        std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| "rheo-operator".into());
    metrics.set_ready(true);

    let elector = if args.leader_election {
        let ns = args.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
        let elector = LeaderElector::new(Api::<Lease>::namespaced(client.clone(), &ns), &args.lease_name, &identity);
        info!(lease = args.lease_name, namespace = ns, identity, "waiting for leadership");
        elector.acquire().await;
        Some(elector)
    } else {
        None
    };
    metrics.leader.set(1);

    let reporter = Reporter { controller: "rheo-operator".into(), instance: Some(identity) };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        jobmanagers: Arc::new(RestJobManagers::default()),
        now: Arc::new(jiff::Timestamp::now),
        autoscaler: Default::default(),
    });
    // The controllers stop on SIGTERM by themselves (`shutdown_on_signal`): they take no new
    // work and end once the passes in flight have finished.
    let controllers = controller::run(client, namespaces, ctx, metrics.clone());
    let holding = async {
        match &elector {
            Some(e) => e.hold().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(controllers, holding, http);
    let lost_leadership = || -> ! {
        error!("leadership lost: exiting so that only one replica acts");
        std::process::exit(1);
    };
    tokio::select! {
        _ = &mut controllers => info!("controllers stopped"),
        _ = &mut holding => lost_leadership(),
        r = &mut http => {
            r.context("metrics server task")?.context("metrics server")?;
        }
        _ = shutdown_signal() => {
            // A pass cut off here would leave its Events unpublished, and a Lease released
            // while it still ran would let the next leader act beside it (make e2e saw the
            // first): the Lease is kept, and renewed, until the passes in flight are done.
            info!("shutting down: waiting for the reconcile passes in flight");
            tokio::select! {
                _ = &mut controllers => info!("controllers stopped"),
                _ = &mut holding => lost_leadership(),
                _ = tokio::time::sleep(SHUTDOWN_DRAIN) => {
                    error!(after = ?SHUTDOWN_DRAIN, "reconcile passes still running at shutdown: stopping them");
                }
            }
        }
    }
    metrics.leader.set(0);
    if let Some(elector) = &elector {
        // The next replica takes over now rather than when the Lease expires.
        if let Err(e) = elector.release().await {
            error!(error = %e, "could not release the leader Lease");
        }
    }
    Ok(())
}

/// How long a stopping operator waits for its passes in flight: well within the pod's default
/// termination grace period of 30 s. A pass waits on nothing long (savepoints and upgrades are
/// polled from later passes), so it ends within its API calls' timeouts.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(20);

/// SIGTERM (the kubelet stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot install the SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
