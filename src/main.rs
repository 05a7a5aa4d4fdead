//! istio-federation-hook: dispatch only. Each program's imperative shell lives beside its core
//! (`discovery::run`, `export::run`, `serve`); docs/ARCHITECTURE.md draws the data flow.

#![warn(clippy::too_many_lines)]

use istio_federation_hook::hook::logging;
use istio_federation_hook::{discovery, doctor, export, serve};
use std::process::ExitCode;

const USAGE: &str = "usage:
  istio-federation-hook [--config]           discovery hook (shell-operator): print config, or run once
  istio-federation-hook export [--config]    export hook: print config, or render our own metadata once
  istio-federation-hook serve [--listen ADDR] [--metadata-dir DIR] [--tls-cert FILE --tls-key FILE]
                                             metadata HTTP server for peers (serve --help for details)
  istio-federation-hook plan [--output text|json]
                                             what an offline discovery run would do, and why (plan --help)
  istio-federation-hook doctor --endpoint URL [--ca FILE] [--insecure] [--trust-domain TD]
         [--key PRIV_PEM --uuid OWN_UUID] [--probe-gateways] [--timeout DURATION] [--output text|json]
                                             check one peer's metadata endpoint step by step (doctor --help)
  istio-federation-hook --help | --version

A run reads the binding context from $BINDING_CONTEXT_PATH (or stdin) and writes object patches
to $KUBERNETES_PATCH_PATH (or $D8_TEST_KUBERNETES_PATCH_SET_FILE, or stdout) and metrics to
$METRICS_PATH. Settings come from $VALUES_PATH and the environment; see docs/reference/settings.md.";

fn main() -> ExitCode {
    logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] => discovery::run::run(),
        ["--config"] => discovery::run::print_config(),
        ["export"] => export::run::run(),
        ["export", "--config"] => export::run::print_config(),
        ["serve", rest @ ..] => serve::run(rest),
        ["plan", rest @ ..] => return ExitCode::from(discovery::plan::cli(rest)),
        ["doctor", rest @ ..] => return ExitCode::from(doctor::cli(rest)),
        ["--help"] | ["-h"] | ["help"] => {
            println!("{USAGE}");
            Ok(())
        }
        ["--version"] | ["-V"] => {
            println!("istio-federation-hook {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        // addon-operator probes extension-less hooks for the batch protocol: we are not one.
        ["hook", ..] => Err("not a batch hook: run with --config or without arguments".to_string()),
        _ => Err(format!("unknown arguments {:?}\n{USAGE}", args.join(" "))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr: shell-operator shows it as the run's error.
            log::error!(target: "main", "{}", e.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
