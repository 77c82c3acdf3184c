//! `par-sidecar` CLI: `run`, `check-config`, `jwks`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use par_sidecar::as_client::discovery;
use par_sidecar::as_client::keys::{union_jwks, KeySet};
use par_sidecar::as_client::registry::build_http;
use par_sidecar::config::{AsSettings, Settings};
use par_sidecar::sidecar::Sidecar;

#[derive(Parser)]
#[command(
    name = "par-sidecar",
    version,
    about = "FAPI 2.0 PAR/JAR/mTLS retrofit sidecar for unmodified OAuth apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the public, admin listeners.
    Run {
        #[arg(long, env = "PAR_SIDECAR_CONFIG")]
        config: PathBuf,
        /// Worker threads for the proxy.
        #[arg(long, env = "PAR_SIDECAR_THREADS", default_value_t = 1)]
        threads: usize,
    },
    /// Parse and validate the config, load every key and certificate, fetch discovery.
    CheckConfig {
        #[arg(long, env = "PAR_SIDECAR_CONFIG")]
        config: PathBuf,
        /// Skip fetching the AS discovery document.
        #[arg(long)]
        offline: bool,
    },
    /// Print the public JWKS of the signing key(s), to register at the AS.
    Jwks {
        #[arg(long, env = "PAR_SIDECAR_CONFIG")]
        config: PathBuf,
    },
}

/// With the `jemalloc` feature: jemalloc with a background thread that purges unused pages
/// (dirty after 1 s, then muzzy pages at once), so memory goes back to the kernel after a
/// burst without anyone calling into the allocator. `_RJEM_MALLOC_CONF` overrides it.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
pub static JEMALLOC_CONF: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn init_logging(json: bool, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAR_SIDECAR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.init();
    }
}

/// Every config problem on its own `error:` line (the callers print the first prefix).
fn load_settings(path: &std::path::Path) -> Result<Settings, String> {
    Settings::load(path).map_err(|e| e.to_string().replace('\n', "\nerror: "))
}

fn main() -> ExitCode {
    // Pin one TLS provider before pingora or reqwest can pick one (platform notes).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, threads } => {
            let settings = match load_settings(&config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(settings.log_json, &settings.log_level);
            let state = match Sidecar::load(settings) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot load key material");
                    return ExitCode::from(2);
                }
            };
            for c in &state.registry.clients {
                for w in &c.keys.load().warnings {
                    tracing::warn!(r#as = c.name(), warning = %w, "key file permissions");
                }
                tracing::info!(
                    r#as = c.name(),
                    issuer = %c.settings.issuer,
                    client_id = %c.settings.client.client_id,
                    kid = c.keys.load().active().kid(),
                    "authorization server configured"
                );
            }
            if let Some(w) = par_sidecar::egress::app_auth::unauthenticated_egress_warning(
                state.settings.egress_addr.is_some(),
                state.settings.app_secret.as_ref(),
            ) {
                tracing::warn!(warning = w, "egress listener without app authentication");
            }
            tracing::info!(
                public = %state.settings.public_addr,
                admin = %state.settings.admin_addr,
                upstream = %state.settings.upstream,
                authorization_servers = state.registry.clients.len(),
                "par-sidecar starting"
            );
            if state.settings.callback_paths.is_empty() {
                tracing::warn!("callback.paths is not set: callback paths are learned from pushed redirect_uris, lost at every restart and different per replica; set them");
            }
            par_sidecar::server::run(state, threads.max(1))
        }
        Command::CheckConfig { config, offline } => check_config(&config, offline),
        Command::Jwks { config } => {
            let keys = load_settings(&config).and_then(|s| {
                s.authorization_servers
                    .iter()
                    .map(|a| KeySet::load(&a.client).map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()
            });
            match keys {
                Ok(sets) => {
                    // The union of every AS's keys: register it (or the relevant part) at each AS.
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&union_jwks(sets.iter())).expect("json")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn check_config(config: &std::path::Path, offline: bool) -> ExitCode {
    let fail = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    };
    let settings = match load_settings(config) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut loaded = Vec::new();
    for a in &settings.authorization_servers {
        match KeySet::load(&a.client) {
            Ok(k) => loaded.push((a, k)),
            Err(e) => return fail(format!("authorization server `{}`: {e}", a.name)),
        }
    }
    print_sidecar(&settings);
    println!("authorization servers: {}", loaded.len());
    for (a, keys) in &loaded {
        print_as(&settings, a, keys);
    }
    if offline {
        println!();
        println!("discovery:         skipped (--offline)");
        return ExitCode::SUCCESS;
    }
    check_discovery(&loaded)
}

/// The listeners, callback paths and egress posture: what the whole sidecar does.
fn print_sidecar(settings: &Settings) {
    println!("config:            {}", settings.source.display());
    println!("public listener:   {}", settings.public_addr);
    println!("admin listener:    {}", settings.admin_addr);
    println!("upstream app:      {}", settings.upstream);
    println!("PAR required:      {}", settings.par_required);
    if settings.callback_paths.is_empty() {
        println!("callback paths:    LEARNED from pushed redirect_uris (not configured)");
        println!("  warning: learned paths are lost at every restart and differ per replica;");
        println!("  set callback.paths to the app's redirect_uri paths");
    } else {
        println!("callback paths:    {}", settings.callback_paths.join(", "));
    }
    if settings.check_all_paths {
        println!("  checked on every path (callback.check_all_paths)");
    }
    println!("code lifetime:     {} s", settings.code_ttl.as_secs());
    if let Some(w) = par_sidecar::egress::app_auth::unauthenticated_egress_warning(
        settings.egress_addr.is_some(),
        settings.app_secret.as_ref(),
    ) {
        println!("WARNING:           {w}");
        println!("                   keys: egress.app_client_secret_file or egress.app_client_secret_sha256");
    }
}

/// One AS: its client, profile, keys (what to register at the AS) and sender binding.
fn print_as(settings: &Settings, a: &AsSettings, keys: &KeySet) {
    println!();
    println!("[{}]", a.name);
    println!("  issuer:          {}", a.issuer);
    println!("  discovery:       {}", a.discovery_url);
    println!("  client_id:       {}", a.client.client_id);
    println!("  auth method:     {}", a.client.auth_method.as_str());
    if let Some(p) = settings
        .as_index(a.name.as_str())
        .and_then(|i| settings.profiles.get(i))
    {
        println!("  profile:         {}", p.describe());
        if let Some(w) = p.client_credentials_warning(settings.app_secret.is_some()) {
            println!("  warning:         {w}");
        }
    }
    let body = if a.request_object {
        "signed request object (JAR)"
    } else {
        "plain parameters (JAR when the AS metadata says require_signed_request_object)"
    };
    println!("  PAR body:        {body}");
    for (i, k) in keys.signing.iter().enumerate() {
        let role = if i == 0 { "signs" } else { "published" };
        println!("  signing key {i}:   {} kid={} ({role})", k.alg().as_str(), k.kid());
    }
    if let Some(k) = &keys.request_object {
        println!(
            "  request objects: {} kid={} (signs request objects only)",
            k.alg().as_str(),
            k.kid()
        );
    }
    println!(
        "  transport cert:  {} (not after {})",
        keys.transport.subject, keys.transport.not_after
    );
    match &keys.dpop {
        Some(k) if keys.dpop_generated => println!(
            "  sender binding:  DPoP, {} key generated in memory per process (replicas do not share it)",
            k.alg().as_str()
        ),
        Some(k) => println!(
            "  sender binding:  DPoP, {} key, jkt={}",
            k.alg().as_str(),
            k.thumbprint()
        ),
        None => println!("  sender binding:  mTLS (certificate-bound tokens)"),
    }
    for k in &keys.encryption {
        // Register this public key (from `par-sidecar jwks`) at the AS for ID token encryption.
        println!("  encryption key:  kid={} alg={} use=enc", k.kid(), k.alg().as_str());
    }
    for w in &keys.warnings {
        println!("  warning:         {w}");
    }
}

/// `check-config` without `--offline`: each AS's discovery, and which URL each call uses.
fn check_discovery(loaded: &[(&AsSettings, KeySet)]) -> ExitCode {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut failed = 0;
    for (a, keys) in loaded {
        println!();
        let http = match build_http(a, keys) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        match rt.block_on(discovery::fetch(http.as_ref(), a)) {
            Ok(m) => {
                println!("[{}] authorize:     {}", a.name, m.authorization_endpoint.url());
                println!("[{}] PAR endpoint:  {}", a.name, m.par_endpoint);
                println!("[{}] requires PAR:  {}", a.name, m.require_par);
                for line in par_sidecar::as_client::mtls_alias::report(&m.endpoints) {
                    println!("[{}] endpoint:      {line}", a.name);
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: [{}] {e}", a.name);
            }
        }
    }
    // One unreachable bank does not stop the sidecar from serving the others, but the
    // check says so with a non-zero exit.
    if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
