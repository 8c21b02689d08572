//! Logging set-up: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` gives one JSON
//! object per line, anything else human-readable text. Logs go to stderr, so reports on
//! stdout stay machine-readable.
//!
//! JSON lines carry the event's fields at the top level, `span` (the innermost span with
//! its fields, e.g. the consumer's `batch` span with its import ids) and `spans` (every
//! enclosing span, outermost first). Text lines print the span path before the message.
//! Colours only when stderr is a terminal, so files and journald get plain text.
//!
//! Every line goes through [`crate::config::scrub`] with the secrets given to
//! [`hide_secrets`] (the passwords of `DATABASE_URL` and `REDIS_URL`): whatever a driver
//! puts in an error, a password never reaches the log.
//!
//! **Traces** ([`init_for_service`]), off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: the same `tracing` spans, through
//! `tracing-opentelemetry`, become OpenTelemetry spans exported over OTLP/HTTP protobuf by
//! a batch processor on a thread of its own (a blocking HTTP client: no async runtime
//! needed, and a slow collector never holds up a request path; when its queue is full,
//! spans are dropped). `OTEL_SERVICE_NAME` names the service (default: the binary's
//! name); `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` choose the sampler
//! ([`SamplerChoice`], default `parentbased_traceidratio` 0.01). The exported spans do
//! not depend on `RUST_LOG` (the logs' filter): every `info` span is traced, and `warn` /
//! `error` events become events of their span. [`shutdown_traces`] exports what is left
//! on exit (`process::run_to_exit`). With traces off, no layer is installed and
//! nothing is exported or computed for them.

use std::io::{IsTerminal, Write};
use std::sync::{OnceLock, RwLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Secrets blanked out of every log line and error line.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds `secrets` to those blanked out of logs and of [`scrubbed`] text.
pub(crate) fn hide_secrets(secrets: Vec<String>) {
    if let Ok(mut all) = SECRETS.write() {
        all.extend(secrets);
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
    }
}

/// `text` without any secret given to [`hide_secrets`] (for lines printed outside logs).
pub fn scrubbed(text: &str) -> String {
    match SECRETS.read() {
        Ok(secrets) if !secrets.is_empty() => crate::config::scrub(text, &secrets),
        _ => text.to_string(),
    }
}

/// Stderr, one buffered event at a time, scrubbed when the event ends.
struct ScrubbedStderr;

/// One event's bytes; written to stderr, scrubbed, on drop.
struct EventBuffer(Vec<u8>);

impl Write for EventBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        let text = scrubbed(&String::from_utf8_lossy(&self.0));
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer(Vec::with_capacity(256))
    }
}

/// Installs the global subscriber once, without traces; later calls are no-ops (tests call
/// it freely).
pub fn init(log_format: &str) {
    install(log_format, None);
}

/// Installs the global subscriber once, with traces exported when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set;
/// `service_name` is the default `service.name` (`OTEL_SERVICE_NAME` wins).
pub(crate) fn init_for_service(log_format: &str, service_name: &str) {
    let settings = TraceSettings::from_env(service_name, |name| std::env::var(name).ok());
    let provider = settings.as_ref().map(|s| (s, s.provider()));
    let installed = install(
        log_format,
        provider
            .as_ref()
            .and_then(|(_, p)| p.as_ref().ok().cloned()),
    );
    match provider {
        Some((settings, Ok(provider))) if installed => {
            let _ = TRACER_PROVIDER.set(provider);
            tracing::info!(service = %settings.service_name, sampler = %settings.sampler, "exporting traces over OTLP/HTTP");
        }
        Some((_, Err(e))) => tracing::warn!(error = %e, "traces are off"),
        _ => {}
    }
    if let Some(warning) = settings.and_then(|s| s.sampler_warning) {
        tracing::warn!("{warning}");
    }
}

/// Whether spans are being exported (traces configured and the subscriber installed).
pub fn traces_enabled() -> bool {
    TRACER_PROVIDER.get().is_some()
}

/// The W3C `traceparent` of `span` ([`crate::trace_context::inject`]); `None` when traces
/// are off. Starts the span's OpenTelemetry side if it has not started yet.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !traces_enabled() {
        return None;
    }
    crate::trace_context::inject(&span.context())
}

/// Exports the spans still buffered and stops the exporter (waits a few seconds at most);
/// a no-op when traces are off. Call once, outside the async runtime, before exiting.
pub(crate) fn shutdown_traces() {
    if let Some(provider) = TRACER_PROVIDER.get() {
        let _ = provider.shutdown_with_timeout(std::time::Duration::from_secs(5));
    }
}

/// The tracer provider, once traces are on.
static TRACER_PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Why traces could not be turned on (the process runs on without them).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TelemetryError {
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// The sampler of `OTEL_TRACES_SAMPLER` (names of the OpenTelemetry specification); the
/// ratio is `OTEL_TRACES_SAMPLER_ARG` (0 to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerChoice {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl SamplerChoice {
    /// The ratio when none (or an invalid one) is given.
    pub const DEFAULT_RATIO: f64 = 0.01;
    /// Without `OTEL_TRACES_SAMPLER`: 1 % of new traces, and what the parent decided.
    pub const DEFAULT: SamplerChoice = SamplerChoice::ParentBasedTraceIdRatio(Self::DEFAULT_RATIO);

    /// Reads `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`. An unknown sampler or a
    /// ratio that is not a number in 0..=1 falls back to the default (the specification's
    /// rule), with the warning to log.
    pub fn parse(sampler: Option<&str>, arg: Option<&str>) -> (SamplerChoice, Option<String>) {
        let arg = arg.map(str::trim).filter(|a| !a.is_empty());
        let parsed_ratio = arg
            .and_then(|a| a.parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r));
        let mut warning = match (arg, parsed_ratio) {
            (Some(a), None) => Some(format!(
                "OTEL_TRACES_SAMPLER_ARG={a:?} is not a ratio between 0 and 1; using {}",
                Self::DEFAULT_RATIO
            )),
            _ => None,
        };
        let ratio = parsed_ratio.unwrap_or(Self::DEFAULT_RATIO);
        let choice = match sampler.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("parentbased_traceidratio") => {
                SamplerChoice::ParentBasedTraceIdRatio(ratio)
            }
            Some("always_on") => SamplerChoice::AlwaysOn,
            Some("always_off") => SamplerChoice::AlwaysOff,
            Some("traceidratio") => SamplerChoice::TraceIdRatio(ratio),
            Some("parentbased_always_on") => SamplerChoice::ParentBasedAlwaysOn,
            Some("parentbased_always_off") => SamplerChoice::ParentBasedAlwaysOff,
            Some(other) => {
                warning = Some(format!(
                    "OTEL_TRACES_SAMPLER={other:?} is not a sampler oms knows; using parentbased_traceidratio {ratio}"
                ));
                SamplerChoice::ParentBasedTraceIdRatio(ratio)
            }
        };
        (choice, warning)
    }

    fn sampler(self) -> Sampler {
        match self {
            SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
            SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
            SamplerChoice::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            SamplerChoice::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            SamplerChoice::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            SamplerChoice::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

impl std::fmt::Display for SamplerChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SamplerChoice::AlwaysOn => f.write_str("always_on"),
            SamplerChoice::AlwaysOff => f.write_str("always_off"),
            SamplerChoice::TraceIdRatio(r) => write!(f, "traceidratio {r}"),
            SamplerChoice::ParentBasedAlwaysOn => f.write_str("parentbased_always_on"),
            SamplerChoice::ParentBasedAlwaysOff => f.write_str("parentbased_always_off"),
            SamplerChoice::ParentBasedTraceIdRatio(r) => write!(f, "parentbased_traceidratio {r}"),
        }
    }
}

/// What the standard `OTEL_*` variables ask for, when traces are on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TraceSettings {
    pub service_name: String,
    pub sampler: SamplerChoice,
    /// Why the sampler settings were not taken as given, to log once logging runs.
    pub sampler_warning: Option<String>,
}

impl TraceSettings {
    /// `None` (traces off) unless `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set and not empty. `env` reads a variable.
    pub fn from_env(
        default_service: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<TraceSettings> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        set("OTEL_EXPORTER_OTLP_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))?;
        let (sampler, sampler_warning) = SamplerChoice::parse(
            env("OTEL_TRACES_SAMPLER").as_deref(),
            env("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        );
        Some(TraceSettings {
            service_name: set("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_string()),
            sampler,
            sampler_warning,
        })
    }

    /// The tracer provider: OTLP/HTTP protobuf exporter (endpoint, headers and timeout
    /// from the standard variables), batch processor, sampler and `service.name`.
    fn provider(&self) -> Result<SdkTracerProvider, TelemetryError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(self.sampler.sampler())
            .with_resource(
                Resource::builder()
                    .with_service_name(self.service_name.clone())
                    .build(),
            )
            .build())
    }
}

/// Installs the global subscriber once (later calls are no-ops: returns false). Without
/// traces: the log filter (`RUST_LOG`) for everything, then the log formatter. With
/// traces, each layer has its own filter: the logs `RUST_LOG`, the OpenTelemetry layer
/// [`exported`] (spans from `info`, events from `warn`), so `RUST_LOG=warn` quiets the
/// logs without emptying the traces.
fn install(log_format: &str, traces: Option<SdkTracerProvider>) -> bool {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let Some(provider) = traces else {
        return tracing_subscriber::registry()
            .with(filter)
            .with(log_layer(log_format))
            .try_init()
            .is_ok();
    };
    // Context activation is off: nothing of ours reads `opentelemetry::Context::current()`
    // (propagation goes through `span.context()`), and activating a context on every span
    // enter and exit is the layer's largest per-span cost.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("oms"))
        .with_context_activation(false)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_level(false)
        .with_target(false);
    tracing_subscriber::registry()
        .with(
            otel.with_filter(
                tracing_subscriber::filter::filter_fn(exported)
                    .with_max_level_hint(tracing::Level::INFO),
            ),
        )
        .with(log_layer(log_format).with_filter(filter))
        .try_init()
        .is_ok()
}

/// What the OpenTelemetry layer sees: spans of level `info` and above (every oms span),
/// and `warn`/`error` events (recorded as span events of the span they happen in).
fn exported(metadata: &tracing::Metadata<'_>) -> bool {
    if metadata.is_span() {
        *metadata.level() <= tracing::Level::INFO
    } else {
        *metadata.level() <= tracing::Level::WARN
    }
}

/// The log formatter: JSON lines or text, to scrubbed stderr.
fn log_layer<S>(log_format: &str) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let logs = tracing_subscriber::fmt::layer().with_writer(ScrubbedStderr);
    if log_format.eq_ignore_ascii_case("json") {
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed()
    } else {
        logs.with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn traces_are_off_without_an_endpoint() {
        assert_eq!(TraceSettings::from_env("consumer", env(&[])), None);
        assert_eq!(
            TraceSettings::from_env(
                "consumer",
                env(&[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", " "),
                    ("OTEL_TRACES_SAMPLER", "always_on")
                ])
            ),
            None
        );
    }

    #[test]
    fn an_endpoint_turns_them_on_with_the_default_sampler_and_the_binarys_name() {
        let s = TraceSettings::from_env(
            "consumer",
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]),
        )
        .unwrap();
        assert_eq!(s.service_name, "consumer");
        assert_eq!(s.sampler, SamplerChoice::ParentBasedTraceIdRatio(0.01));
        assert_eq!(s.sampler_warning, None);
        let s = TraceSettings::from_env(
            "consumer",
            env(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://127.0.0.1:4318/v1/traces",
                ),
                ("OTEL_SERVICE_NAME", "oms-consumer-eu"),
            ]),
        )
        .unwrap();
        assert_eq!(s.service_name, "oms-consumer-eu");
    }

    #[test]
    fn samplers_are_read_by_their_specification_names() {
        let parse = |s: &str, a: Option<&str>| SamplerChoice::parse(Some(s), a).0;
        assert_eq!(parse("always_on", None), SamplerChoice::AlwaysOn);
        assert_eq!(parse("ALWAYS_OFF", None), SamplerChoice::AlwaysOff);
        assert_eq!(
            parse("traceidratio", Some("0.5")),
            SamplerChoice::TraceIdRatio(0.5)
        );
        assert_eq!(
            parse("parentbased_always_on", None),
            SamplerChoice::ParentBasedAlwaysOn
        );
        assert_eq!(
            parse("parentbased_always_off", None),
            SamplerChoice::ParentBasedAlwaysOff
        );
        assert_eq!(
            parse("parentbased_traceidratio", Some(" 0.25 ")),
            SamplerChoice::ParentBasedTraceIdRatio(0.25)
        );
        assert_eq!(
            SamplerChoice::parse(None, None),
            (SamplerChoice::DEFAULT, None)
        );
    }

    #[test]
    fn an_unknown_sampler_or_a_bad_ratio_falls_back_with_a_warning() {
        let (choice, warning) = SamplerChoice::parse(Some("jaeger_remote"), None);
        assert_eq!(choice, SamplerChoice::DEFAULT);
        assert!(warning.unwrap().contains("jaeger_remote"));
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            let (choice, warning) = SamplerChoice::parse(Some("traceidratio"), Some(bad));
            assert_eq!(choice, SamplerChoice::TraceIdRatio(0.01), "{bad}");
            assert!(warning.unwrap().contains(bad));
        }
    }
}
