//! `deprovisioner run | crd | evidence | connector | inactive`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use deprovisioner::cli::{Cli, Command, ConnectorArgs, LogFormat, RunArgs};
use deprovisioner::controller::{self, Settings, Shared};
use deprovisioner::finished::Finished;
use deprovisioner::leader::{self, LeaseSettings};
use deprovisioner::metrics::Metrics;
use deprovisioner::plan::subject::{self, Protected};
use deprovisioner::webhook::auth::{HeaderScheme, SecretFile};
use deprovisioner::webhook::guard::{PerMinute, PerSource};
use deprovisioner::webhook::server::{self, ServerLimits};
use deprovisioner::webhook::{self, WebhookState};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", deprovisioner::crd::all_yaml()?);
            Ok(())
        }
        Command::Run(args) => run(*args).await,
        Command::Evidence(args) => {
            let config = kube_config(args.kubeconfig.as_deref(), args.context.clone()).await?;
            let cluster = config.cluster_url.to_string();
            let client = Client::try_from(config).context("building the Kubernetes client")?;
            deprovisioner::evidence::write(&client, cluster, &args).await
        }
        Command::Connector(args) => connector(args).await,
        Command::Inactive(args) => {
            let config = kube_config(args.kubeconfig.as_deref(), args.context.clone()).await?;
            let client = Client::try_from(config).context("building the Kubernetes client")?;
            deprovisioner::inactive::run(&client, &args).await
        }
        Command::Expiring(args) => {
            let config = kube_config(args.kubeconfig.as_deref(), args.context.clone()).await?;
            let client = Client::try_from(config).context("building the Kubernetes client")?;
            print!("{}", deprovisioner::expiring::run(&client, &args).await?);
            Ok(())
        }
    }
}

/// One Lumos Connector API call: the answer (an `ErrorResponse` included) on standard output.
/// Only a request that cannot be read exits non-zero; a cluster that cannot be configured is an
/// `ErrorResponse` too (`info` needs none).
async fn connector(args: ConnectorArgs) -> anyhow::Result<()> {
    use deprovisioner::connector::wire::{ConnectorError, ErrorCode};
    use deprovisioner::connector::{self, Capability};
    use std::io::{Read as _, Write as _};
    let body = match (&args.json, &args.json_file) {
        (Some(json), _) => json.clone().into_bytes(),
        (None, Some(path)) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        (None, None) if Capability::parse(&args.capability) == Some(Capability::Info) => Vec::new(),
        (None, None) => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).context("reading the request from standard input")?;
            buf
        }
    };
    let answer = match connector::answer_offline(&args.capability) {
        Some(answer) => answer,
        None => match kube_config(args.kubeconfig.as_deref(), args.context.clone()).await {
            Ok(config) => {
                let cluster_label = format!("Kubernetes cluster at {}", config.cluster_url);
                let client = Client::try_from(config).context("building the Kubernetes client")?;
                let protected = Protected {
                    operator: Some(args.service_account.clone()),
                    also: args.protect_service_account.clone(),
                };
                let writer = connector::Writer::Client { deadline: args.deadline };
                let conn = connector::Connector::new(client, protected, cluster_label, None, writer)
                    .with_activity(&args.activity.activity_namespace, &args.activity.activity_prefix)
                    .with_fleet(args.fleet_hub);
                connector::call(&conn, &args.capability, &body).await
            }
            Err(e) => ConnectorError::new(ErrorCode::ConnectionRejected, format!("no cluster to read: {e:#}"))
                .to_response(&args.capability),
        },
    };
    if let Some(path) = &args.result_file_path {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        serde_json::to_writer(&mut gz, &answer).with_context(|| format!("writing {}", path.display()))?;
        let file = gz.finish().with_context(|| format!("writing {}", path.display()))?;
        file.sync_all().with_context(|| format!("writing {}", path.display()))?;
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &answer).context("writing the answer")?;
    writeln!(out).context("writing the answer")?;
    Ok(())
}

fn init_logging(args: &RunArgs) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(&args.log_level).with_context(|| format!("bad --log-level {:?}", args.log_level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        // Every line carries its spans' fields: a finished record's line its trace id.
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// The client configuration: the kubeconfig file given (with `context`), else inferred.
async fn kube_config(kubeconfig: Option<&Path>, context: Option<String>) -> anyhow::Result<Config> {
    Ok(match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let opts = KubeConfigOptions { context, ..Default::default() };
            Config::from_custom_kubeconfig(kc, &opts).await.context("loading kubeconfig")?
        }
        None => Config::infer().await.context("no kubeconfig and not running in a cluster")?,
    })
}

/// The operator's client: every request but watches and the Lease goes through one API budget
/// (`--api-in-flight`, by priority; see `deprovisioner::budget`).
async fn client(args: &RunArgs, metrics: &Arc<Metrics>) -> anyhow::Result<Client> {
    use deprovisioner::budget::{Budget, BudgetLayer};
    let mut config = kube_config(args.kubeconfig.as_deref(), args.context.clone()).await?;
    // The client's retries (429, 503, 504, with backoff) go around the budget, not inside it: a
    // request asleep in backoff must not hold one of the budget's slots.
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config).context("building the Kubernetes client")?;
    let budget = BudgetLayer(Budget::new(usize::from(args.api_in_flight), metrics.clone()));
    let buffered = tower::buffer::BufferLayer::<http::Request<kube::client::Body>>::new(1024);
    let retries = tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry());
    Ok(builder.with_layer(&buffered).with_layer(&budget).with_layer(&retries).build())
}

/// Fails fast when the CRDs are not installed; also opens the API connection before the first
/// webhook call needs it. An unreachable API server is only logged: the webhook then answers
/// FAILURE and the controller retries.
async fn check_crds(client: &Client) -> anyhow::Result<()> {
    use deprovisioner::crd::DeprovisionRequest;
    use kube::api::{Api, ListParams};
    let api: Api<DeprovisionRequest> = Api::all(client.clone());
    let lp = ListParams::default().limit(1);
    let probe = tokio::time::timeout(std::time::Duration::from_secs(10), api.list_metadata(&lp));
    match probe.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(s))) if s.is_not_found() => anyhow::bail!(
            "the DeprovisionRequest CRD is not installed: run `deprovisioner crd | kubectl apply -f -` (or install the chart)"
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "API server check failed at start; continuing");
            Ok(())
        }
        Err(_) => {
            tracing::warn!("API server did not answer within 10s at start; continuing");
            Ok(())
        }
    }
}

/// The operator's own ServiceAccount: `--service-account`, or in a pod the subject of its
/// mounted token. Without either it is not protected, which is logged.
fn own_identity(args: &RunArgs) -> Option<(String, String)> {
    if let Some(sa) = &args.service_account {
        return Some(sa.clone());
    }
    let token = std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/token").ok();
    let found = token.as_deref().and_then(subject::service_account_of_token);
    match &found {
        Some((ns, name)) => {
            tracing::info!(namespace = %ns, name = %name, "protecting the operator's own ServiceAccount (from its token)")
        }
        None => tracing::warn!(
            "--service-account not set and no in-cluster token: the operator's own identity is not protected"
        ),
    }
    found
}

/// Cancels `stop` at the first SIGINT or SIGTERM. The handlers are installed before this returns:
/// from then on a signal always takes the one shutdown path (before, the default action ends the
/// process, which then holds nothing).
fn stop_on_signal(stop: CancellationToken) -> anyhow::Result<()> {
    #[cfg(unix)]
    let signalled = {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
        async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
    };
    #[cfg(not(unix))]
    let signalled = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::spawn(async move {
        signalled.await;
        tracing::info!("shutting down: draining the webhook");
        stop.cancel();
    });
    tracing::debug!("SIGTERM and SIGINT stop the process");
    Ok(())
}

/// `deprovisioner run`: its components, in the order they start. One shutdown token ends them
/// all: cancelled on SIGINT or SIGTERM (from the start), or when the controller dies (the process
/// then exits non-zero so the pod restarts).
async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(&args)?;
    args.check().map_err(anyhow::Error::msg)?;
    let stop = CancellationToken::new();
    stop_on_signal(stop.clone())?;
    let (secret, connector_secrets) = secrets(&args)?;
    let metrics = Metrics::new();
    let Some(client) = connect(&args, &metrics, &stop).await? else {
        return Ok(()); // stopped before anything started
    };
    serve_metrics(&args, &metrics, &stop).await?;
    // The view outlives `stop` until the controllers and the server are done: plans still
    // running, and calls still waiting, keep reading it.
    let view_stop = CancellationToken::new();
    let _view_stops_last = view_stop.clone().drop_guard();
    let shared = view(&args, &client, &metrics, &view_stop);
    let protected = Protected { operator: own_identity(&args), also: args.protect_service_account.clone() };
    let webhook = webhook_state(&args, &client, secret, &metrics, &shared);
    let server = serve(&args, &client, &webhook, connector_secrets, &protected, &shared, &stop).await?;
    let audit = serve_audit(&args, &client, &metrics, &webhook.secret, &stop).await?;
    let mut settings = settings(&args, protected, metrics);
    settings.fleet_agent = fleet_agent(&args, &settings.protected).await?;
    let controllers = run_controllers(client, settings, shared, &args, stop.clone());
    #[cfg(feature = "failpoints")]
    let controllers = args.failpoints.controllers(controllers);
    let ran = supervise(controllers, &webhook, server, &stop).await;
    if let Some(audit) = audit {
        audit.await.context("audit endpoint")?;
    }
    ran
}

/// The audit endpoint on `--audit-listen` (last activity, issue 26), on every replica, until
/// `stop` (then drained, and what it acknowledged stored); `None` when off.
async fn serve_audit(
    args: &RunArgs,
    client: &Client,
    metrics: &Arc<Metrics>,
    webhook_secret: &SecretFile,
    stop: &CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    use deprovisioner::activity::{flush::StoreSettings, receiver};
    let (Some(listen), Some(token_file)) = (args.audit_listen, args.audit_token_file.clone()) else {
        return Ok(None);
    };
    let settings = receiver::Settings {
        listen,
        token_file,
        max_body: args.audit_max_body as usize,
        max_events_per_second: args.audit_max_events_per_second,
        tls: args.audit_tls_cert_file.clone().zip(args.audit_tls_key_file.clone()),
        store: StoreSettings {
            namespace: args.namespace.clone(),
            prefix: args.activity_prefix.clone(),
            resolution: args.activity_resolution,
            max_accounts: args.activity_max_accounts as usize,
            gap: args.activity_gap,
        },
    };
    let limits = ServerLimits {
        header_read_timeout: args.header_read_timeout,
        max_connections: args.max_connections as usize,
        drain: args.shutdown_drain,
    };
    let started = receiver::start(settings, client.clone(), metrics.clone(), limits, webhook_secret, stop.clone());
    Ok(Some(started.await?))
}

/// The webhook's secret, and the connector's own secrets.
fn secrets(args: &RunArgs) -> anyhow::Result<(SecretFile, deprovisioner::connector::access::Secrets)> {
    let secret = SecretFile::load(&args.secret_file)?;
    let connector = deprovisioner::connector::access::Secrets::load(
        args.connector_secret_file.as_deref(),
        args.connector_unassign_secret_file.as_deref(),
        &secret,
    )?;
    Ok((secret, connector))
}

/// The API server's client, once the CRDs are known installed; `None` when stopped first.
async fn connect(args: &RunArgs, metrics: &Arc<Metrics>, stop: &CancellationToken) -> anyhow::Result<Option<Client>> {
    let connected = async {
        let client = client(args, metrics).await?;
        check_crds(&client).await?;
        anyhow::Ok(client)
    };
    tokio::select! {
        biased;
        _ = stop.cancelled() => Ok(None),
        client = connected => client.map(Some),
    }
}

/// `/metrics` on its own listener (`--metrics-listen`), until `stop`.
async fn serve_metrics(args: &RunArgs, metrics: &Arc<Metrics>, stop: &CancellationToken) -> anyhow::Result<()> {
    let Some(addr) = args.metrics_listen else { return Ok(()) };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening on /metrics");
    let router = metrics.clone().router();
    let stopped = stop.clone().cancelled_owned();
    tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(stopped).await });
    Ok(())
}

/// The view of the cluster (every watch, kept on every replica, leading or not: a replica that
/// takes over plans at once), the calls' waiting room, and the hand-off to the controller here.
fn view(args: &RunArgs, client: &Client, metrics: &Arc<Metrics>, stop: &CancellationToken) -> Shared {
    let finished = Finished::new();
    let unfinished = controller::unfinished_selector();
    let settings = deprovisioner::view::Settings {
        namespace: &args.namespace,
        sentinel: &args.index_barrier,
        bindings: args.controller && args.binding_index,
        unfinished: &unfinished,
    };
    let view = deprovisioner::view::View::start(client, settings, finished.clone(), metrics.clone(), stop);
    Shared { view: Some(view), finished, handoff: Arc::new(controller::Handoff::new(metrics.clone())) }
}

/// What every webhook call shares.
fn webhook_state(
    args: &RunArgs,
    client: &Client,
    secret: SecretFile,
    metrics: &Arc<Metrics>,
    shared: &Shared,
) -> Arc<WebhookState> {
    Arc::new(WebhookState {
        client: client.clone(),
        secret,
        header: HeaderScheme::new(args.secret_header.clone()),
        deadline: args.response_deadline,
        body_limit: args.body_limit as usize,
        metrics: metrics.clone(),
        in_flight: tokio::sync::Semaphore::new(args.max_in_flight as usize),
        unauthenticated: PerSource::new(args.unauthenticated_per_minute),
        recorded: PerMinute::new(args.max_requests_per_minute),
        controller_alive: AtomicBool::new(true),
        finished: shared.finished.clone(),
        handoff: shared.handoff.clone(),
        view: shared.view.clone(),
    })
}

/// The webhook and the Lumos connector on `--listen`, until `stop` (then drained).
async fn serve(
    args: &RunArgs,
    client: &Client,
    webhook: &Arc<WebhookState>,
    secrets: deprovisioner::connector::access::Secrets,
    protected: &Protected,
    shared: &Shared,
    stop: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use deprovisioner::connector::{self, http};
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, path = webhook::DEPROVISION_PATH, "webhook listening");
    match (secrets.read.is_some(), secrets.unassign.is_some()) {
        (false, false) => tracing::info!(
            "the Lumos connector is not served over HTTP (no --connector-secret-file or --connector-unassign-secret-file)"
        ),
        (read, unassign) => tracing::info!(
            path = http::PATH,
            read_secret = read,
            unassign_secret = unassign,
            "the Lumos connector is served behind its own secrets"
        ),
    }
    let limits = ServerLimits {
        header_read_timeout: args.header_read_timeout,
        max_connections: args.max_connections as usize,
        drain: args.shutdown_drain,
    };
    let writer = connector::Writer::Operator(webhook.clone());
    let cluster = "Kubernetes cluster".to_string();
    let conn = connector::Connector::new(client.clone(), protected.clone(), cluster, shared.view.clone(), writer)
        .with_activity(&args.namespace, &args.activity_prefix)
        .with_fleet(args.fleet_hub);
    let connector = Arc::new(http::ConnectorState { secrets, webhook: webhook.clone(), connector: conn });
    let routes = webhook::router(webhook.clone()).merge(http::router(connector));
    Ok(tokio::spawn(server::serve(listener, routes, limits, stop.clone())))
}

/// The controllers' settings.
fn settings(args: &RunArgs, protected: Protected, metrics: Arc<Metrics>) -> Settings {
    Settings {
        retention: args.retention,
        give_up_after: args.give_up_after,
        protected,
        concurrency: args.concurrency,
        reviews_per_binding: usize::from(args.reviews_per_binding),
        #[cfg(feature = "failpoints")]
        failpoints: args.failpoints.clone(),
        namespace: args.namespace.clone(),
        metrics,
        regrant_watch: args.regrant_watch,
        last_activity: (args.record_last_activity || args.audit_listen.is_some()).then(|| args.activity_prefix.clone()),
        expiry_clocks: args.expiry.then(|| args.expiry_clocks.clone()),
        fleet_hub: args.fleet_hub,
        fleet_member_timeout: args.fleet_member_timeout,
        fleet_agent: None,
    }
}

/// The fleet agent's settings when this cluster is a member (`--hub-kubeconfig`): a client for
/// the hub with the agent's own identity there (through no budget: the hub's API server is not
/// this cluster's).
async fn fleet_agent(
    args: &RunArgs,
    protected: &Protected,
) -> anyhow::Result<Option<deprovisioner::fleet::AgentSettings>> {
    let (Some(path), Some(member)) = (&args.hub_kubeconfig, &args.member_name) else { return Ok(None) };
    let config = kube_config(Some(path), None).await.context("the hub's kubeconfig (--hub-kubeconfig)")?;
    let hub = Client::try_from(config).context("building the hub's client")?;
    let mailbox = args.hub_mailbox.clone().unwrap_or_else(|| deprovisioner::fleet::default_mailbox(member));
    Ok(Some(deprovisioner::fleet::AgentSettings {
        hub,
        member: member.clone(),
        mailbox,
        heartbeat: args.fleet_heartbeat,
        inventory_every: args.fleet_inventory_every,
        protected: protected.clone(),
    }))
}

/// Waits for the controllers, then for the server's drain. A controller that ends while the
/// process is not stopping has died: the webhook stops accepting calls no controller would
/// finish, everything stops, and the process exits non-zero so the pod restarts.
async fn supervise(
    controllers: impl Future<Output = anyhow::Result<()>>,
    webhook: &WebhookState,
    server: tokio::task::JoinHandle<()>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let ran = controllers.await;
    let died = !stop.is_cancelled();
    if died {
        webhook.controller_alive.store(false, Ordering::SeqCst);
        tracing::error!("the controller stopped while the process was not stopping; exiting so the pod restarts");
        stop.cancel();
    }
    server.await.context("webhook server")?;
    ran?;
    if died {
        anyhow::bail!("the controller stopped unexpectedly");
    }
    Ok(())
}

/// Runs the controllers until `stop`; with leader election, only while this replica holds the
/// Lease. Returns early only when something it depends on fails for good.
async fn run_controllers(
    client: Client,
    settings: Settings,
    shared: Shared,
    args: &RunArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    if !args.controller {
        tracing::info!("--controller=false: serving the webhook only");
        stop.cancelled().await;
        return Ok(());
    }
    if !args.leader_election {
        let _leading = settings.metrics.leading();
        controller::run(client, settings, shared, stop).await;
        return Ok(());
    }
    let lease = LeaseSettings {
        name: args.lease_name.clone(),
        namespace: args.namespace.clone(),
        duration: args.lease_duration_seconds,
        grace: args.lease_grace_seconds,
    };
    leader::run(client, settings, shared, lease, stop).await
}
