//! Metrics in CloudWatch Embedded Metric Format (EMF): one JSON log line per event, no API
//! call on the request path. CloudWatch turns the lines into metrics; locally the runner feeds
//! the very same documents to a [`Registry`] that `/metrics` renders in Prometheus text format,
//! so both views count from one code path.
//!
//! Dimensions stay bounded: `Function` (one of the eight), `Activity` (a sale) and, for
//! [`Metric::Buys`], `Outcome` (seven values). Never a user, a receipt or an order id. Every
//! metric is also published without `Activity`, which is what alarms and the dashboard use,
//! since they cannot know an activity id in advance.
//!
//! Redis and MySQL call latencies are collected per invocation: [`calls`] runs a handler's
//! future with a task-local collector that the adapters' [`record_redis`] / [`record_mysql`]
//! fill, and the invocation's event carries them (EMF takes up to 100 values per metric).

use std::{
    cell::RefCell,
    collections::BTreeMap,
    fmt::Write as _,
    future::Future,
    io::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Map, Value, json};

pub use crate::config::MetricsConfig;

/// How a metric aggregates, locally and in the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Summed.
    Counter,
    /// The last value wins.
    Gauge,
    /// A distribution (percentiles in CloudWatch, buckets in Prometheus).
    Histogram,
}

/// Every metric the functions emit: its EMF name and unit, its Prometheus name and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// One press of "buy", with its `Outcome`.
    Buys,
    /// Order rows the consumer inserted (duplicates of existing rows not counted).
    OrdersWritten,
    /// Now minus the purchase time, when the order row is written.
    PipelineLag,
    /// Orders that became paid (a repeated payment not counted).
    Payments,
    /// Orders cancelled unpaid at their payment deadline.
    Cancellations,
    /// Units put back in stock (cancellations and dead letters), once each.
    UnitsRestored,
    /// Purchases whose message could not be delivered and were given up (`failed`).
    DeadLetters,
    /// Outbox entries not yet acknowledged, as outbox-retry saw them (a gauge).
    OutboxPending,
    /// Age of the oldest of them.
    OutboxOldestAge,
    /// 1 when a reconcile report was unbalanced, 0 when balanced.
    ReconcileUnbalanced,
    RedisLatency,
    MysqlLatency,
}

impl Metric {
    pub const ALL: [Metric; 12] = [
        Self::Buys,
        Self::OrdersWritten,
        Self::PipelineLag,
        Self::Payments,
        Self::Cancellations,
        Self::UnitsRestored,
        Self::DeadLetters,
        Self::OutboxPending,
        Self::OutboxOldestAge,
        Self::ReconcileUnbalanced,
        Self::RedisLatency,
        Self::MysqlLatency,
    ];

    /// (EMF name, EMF unit, Prometheus name, kind, help)
    const fn spec(self) -> (&'static str, &'static str, &'static str, Kind, &'static str) {
        use Kind::*;
        match self {
            Self::Buys => ("Buys", "Count", "flash_buys_total", Counter, "Presses of buy, by outcome."),
            Self::OrdersWritten => {
                ("OrdersWritten", "Count", "flash_orders_written_total", Counter, "Order rows inserted.")
            }
            Self::PipelineLag => {
                ("PipelineLag", "Milliseconds", "flash_pipeline_lag_milliseconds", Histogram, "Purchase to order row.")
            }
            Self::Payments => ("Payments", "Count", "flash_payments_total", Counter, "Orders paid."),
            Self::Cancellations => {
                ("Cancellations", "Count", "flash_cancellations_total", Counter, "Orders cancelled unpaid.")
            }
            Self::UnitsRestored => {
                ("UnitsRestored", "Count", "flash_units_restored_total", Counter, "Units put back in stock.")
            }
            Self::DeadLetters => {
                ("DeadLetters", "Count", "flash_dead_letters_total", Counter, "Purchases given up as failed.")
            }
            Self::OutboxPending => {
                ("OutboxPending", "Count", "flash_outbox_pending", Gauge, "Outbox entries not acknowledged.")
            }
            Self::OutboxOldestAge => (
                "OutboxOldestAge",
                "Seconds",
                "flash_outbox_oldest_age_seconds",
                Gauge,
                "Age of the oldest outbox entry.",
            ),
            Self::ReconcileUnbalanced => (
                "ReconcileUnbalanced",
                "Count",
                "flash_reconcile_unbalanced",
                Gauge,
                "1 when the last reconcile report was unbalanced.",
            ),
            Self::RedisLatency => {
                ("RedisLatency", "Milliseconds", "flash_redis_latency_milliseconds", Histogram, "Redis round trips.")
            }
            Self::MysqlLatency => {
                ("MysqlLatency", "Milliseconds", "flash_mysql_latency_milliseconds", Histogram, "MySQL statements.")
            }
        }
    }

    pub fn name(self) -> &'static str {
        self.spec().0
    }

    pub fn unit(self) -> &'static str {
        self.spec().1
    }

    pub fn prometheus_name(self) -> &'static str {
        self.spec().2
    }

    pub fn kind(self) -> Kind {
        self.spec().3
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// What a buy came to, as the `Outcome` dimension says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuyResult {
    Queued,
    SoldOut,
    AlreadyBought,
    NotOpen,
    RateLimited,
    Unavailable,
    /// Refused before the sale was asked: a bad body, no product, no identity.
    Rejected,
}

impl BuyResult {
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::SoldOut => "sold_out",
            Self::AlreadyBought => "already_bought",
            Self::NotOpen => "not_open",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Rejected => "rejected",
        }
    }
}

/// EMF allows at most 100 values per metric in one document.
const MAX_VALUES: usize = 100;

/// One event: values for some metrics, under one set of dimension values.
#[derive(Debug, Clone, Default)]
pub struct Event {
    activity: Option<u64>,
    outcome: Option<&'static str>,
    values: BTreeMap<Metric, Vec<f64>>,
}

impl Event {
    pub fn new(activity: Option<u64>) -> Self {
        Self { activity, ..Self::default() }
    }

    pub fn outcome(mut self, outcome: BuyResult) -> Self {
        self.outcome = Some(outcome.label());
        self
    }

    /// Adds one value (a count, a gauge's reading, one sample of a distribution).
    pub fn add(mut self, metric: Metric, value: f64) -> Self {
        self.push(metric, value);
        self
    }

    pub fn push(&mut self, metric: Metric, value: f64) {
        let values = self.values.entry(metric).or_default();
        match metric.kind() {
            // Counts of one event add up; a gauge keeps its last reading.
            Kind::Counter => match values.first_mut() {
                Some(sum) => *sum += value,
                None => values.push(value),
            },
            Kind::Gauge => *values = vec![value],
            Kind::Histogram if values.len() < MAX_VALUES => values.push(value),
            Kind::Histogram => {}
        }
    }

    /// The invocation's Redis and MySQL latencies.
    pub fn with_calls(mut self, calls: Calls) -> Self {
        for ms in calls.redis {
            self.push(Metric::RedisLatency, ms);
        }
        for ms in calls.mysql {
            self.push(Metric::MysqlLatency, ms);
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Where emitted documents go: stdout in Lambda (CloudWatch Logs ingests the line); the local
/// runner's [`Registry`] for `/metrics`; a list a test reads. Any combination.
#[derive(Clone, Default)]
pub struct Sink {
    pub stdout: bool,
    pub registry: Option<Arc<Registry>>,
    pub capture: Option<Arc<Mutex<Vec<Value>>>>,
}

impl Sink {
    pub fn stdout() -> Self {
        Self { stdout: true, ..Self::default() }
    }

    fn is_off(&self) -> bool {
        !self.stdout && self.registry.is_none() && self.capture.is_none()
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("stdout", &self.stdout)
            .field("registry", &self.registry.is_some())
            .field("capture", &self.capture.is_some())
            .finish()
    }
}

/// One function's emitter: the namespace, the function's name, the sink. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: Arc<str>,
    function: &'static str,
    sink: Sink,
}

impl Metrics {
    pub fn new(cfg: &MetricsConfig, function: &'static str) -> Self {
        Self { namespace: cfg.namespace.as_str().into(), function, sink: cfg.sink.clone() }
    }

    pub fn function(&self) -> &'static str {
        self.function
    }

    /// The local registry these metrics feed, if any (the runner's `/metrics`).
    pub fn registry(&self) -> Option<&Arc<Registry>> {
        self.sink.registry.as_ref()
    }

    /// Runs one invocation and emits the Redis and MySQL latencies it measured.
    pub async fn invocation<F: Future>(&self, fut: F) -> F::Output {
        let (out, calls) = calls(fut).await;
        self.emit(Event::new(None).with_calls(calls));
        out
    }

    /// Emits one event (nothing when it holds no values).
    pub fn emit(&self, event: Event) {
        if event.is_empty() || self.sink.is_off() {
            return;
        }
        let doc = self.document(&event, chrono::Utc::now().timestamp_millis());
        if let Some(registry) = &self.sink.registry {
            registry.ingest(&doc);
        }
        if self.sink.stdout {
            print_line(&doc);
        }
        if let Some(kept) = &self.sink.capture
            && let Ok(mut kept) = kept.lock()
        {
            kept.push(doc);
        }
    }

    /// The EMF document of one event.
    pub fn document(&self, event: &Event, timestamp_ms: i64) -> Value {
        let mut root = Map::new();
        root.insert("Function".into(), Value::from(self.function));
        let mut base = vec!["Function"];
        if let Some(activity) = event.activity {
            root.insert("Activity".into(), Value::from(activity.to_string()));
            base.push("Activity");
        }
        let dimension_sets = |extra: Option<&'static str>| {
            let mut fine = base.clone();
            fine.extend(extra);
            let mut sets = vec![fine];
            if event.activity.is_some() {
                let mut coarse = vec!["Function"];
                coarse.extend(extra);
                sets.push(coarse);
            }
            json!(sets)
        };
        let mut directives = Vec::new();
        let (buys, rest): (Vec<_>, Vec<_>) = event.values.keys().partition(|m| **m == Metric::Buys);
        if !buys.is_empty() {
            let outcome = event.outcome.unwrap_or(BuyResult::Rejected.label());
            root.insert("Outcome".into(), Value::from(outcome));
            directives.push(directive(&self.namespace, dimension_sets(Some("Outcome")), &buys));
        }
        if !rest.is_empty() {
            directives.push(directive(&self.namespace, dimension_sets(None), &rest));
        }
        for (metric, values) in &event.values {
            let value = match values.as_slice() {
                [one] => json!(one),
                many => json!(many),
            };
            root.insert(metric.name().into(), value);
        }
        root.insert("_aws".into(), json!({ "Timestamp": timestamp_ms, "CloudWatchMetrics": directives }));
        Value::Object(root)
    }
}

fn directive(namespace: &str, dimensions: Value, metrics: &[&Metric]) -> Value {
    let defs: Vec<Value> = metrics.iter().map(|m| json!({"Name": m.name(), "Unit": m.unit()})).collect();
    json!({ "Namespace": namespace, "Dimensions": dimensions, "Metrics": defs })
}

fn print_line(doc: &Value) {
    let mut out = std::io::stdout().lock();
    // A log line lost to a closed stdout is not worth failing a purchase for.
    drop(writeln!(out, "{doc}"));
}

/// Redis and MySQL round trips of one invocation, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Calls {
    pub redis: Vec<f64>,
    pub mysql: Vec<f64>,
}

tokio::task_local! {
    static CALLS: RefCell<Calls>;
}

/// Runs an invocation's future with a collector of its Redis and MySQL latencies.
pub async fn calls<F: Future>(fut: F) -> (F::Output, Calls) {
    CALLS
        .scope(RefCell::new(Calls::default()), async {
            let out = fut.await;
            let calls = CALLS.try_with(|c| c.take()).unwrap_or_default();
            (out, calls)
        })
        .await
}

fn record(took: Duration, pick: fn(&mut Calls) -> &mut Vec<f64>) {
    // Outside an invocation's scope (start-up, a spawned task) there is nothing to record into.
    let _ = CALLS.try_with(|c| {
        let mut calls = c.borrow_mut();
        let values = pick(&mut calls);
        if values.len() < MAX_VALUES {
            values.push(took.as_secs_f64() * 1000.0);
        }
    });
}

pub fn record_redis(took: Duration) {
    record(took, |c| &mut c.redis);
}

pub fn record_mysql(took: Duration) {
    record(took, |c| &mut c.mysql);
}

/// Upper bounds (ms) of the local histograms' buckets.
const BUCKETS_MS: [f64; 14] =
    [0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0, 30000.0, 60000.0];

#[derive(Debug, Clone, Default)]
struct Series {
    value: f64,
    count: u64,
    buckets: [u64; BUCKETS_MS.len()],
}

/// Local aggregation of EMF documents, rendered as Prometheus text. It reads only what a
/// document says (its directives, dimension values and values), as CloudWatch would.
#[derive(Default)]
pub struct Registry {
    series: Mutex<BTreeMap<SeriesKey, Series>>,
}

/// A metric and its label pairs (the dimension values), in declaration order.
type SeriesKey = (Metric, Vec<(String, String)>);

impl Registry {
    /// Counts one EMF document, by the finest dimension set of each directive.
    pub fn ingest(&self, doc: &Value) {
        let Some(directives) = doc.pointer("/_aws/CloudWatchMetrics").and_then(Value::as_array) else { return };
        let Ok(mut series) = self.series.lock() else { return };
        for directive in directives {
            let dims: Vec<(String, String)> = directive
                .pointer("/Dimensions/0")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|d| (d.to_ascii_lowercase(), doc.get(d).map(label_value).unwrap_or_default()))
                .collect();
            let defs = directive.get("Metrics").and_then(Value::as_array).into_iter().flatten();
            for metric in defs.filter_map(|d| d.get("Name")?.as_str()).filter_map(Metric::from_name) {
                let values: Vec<f64> = match doc.get(metric.name()) {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_f64).collect(),
                    Some(v) => v.as_f64().into_iter().collect(),
                    None => continue,
                };
                let s = series.entry((metric, dims.clone())).or_default();
                for v in values {
                    match metric.kind() {
                        Kind::Counter => s.value += v,
                        Kind::Gauge => s.value = v,
                        Kind::Histogram => {
                            s.value += v;
                            for (i, bound) in BUCKETS_MS.iter().enumerate() {
                                if v <= *bound {
                                    s.buckets[i] += 1;
                                }
                            }
                        }
                    }
                    s.count += 1;
                }
            }
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(series) = self.series.lock() else { return out };
        let mut family = None;
        for ((metric, labels), s) in series.iter() {
            let name = metric.prometheus_name();
            if family != Some(*metric) {
                family = Some(*metric);
                let kind = match metric.kind() {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                    Kind::Histogram => "histogram",
                };
                let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", metric.spec().4);
            }
            let labels_with = |extra: Option<String>| {
                let mut parts: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
                parts.extend(extra);
                if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
            };
            match metric.kind() {
                Kind::Counter | Kind::Gauge => {
                    let _ = writeln!(out, "{name}{} {}", labels_with(None), s.value);
                }
                Kind::Histogram => {
                    for (bound, n) in BUCKETS_MS.iter().zip(s.buckets) {
                        let _ = writeln!(out, "{name}_bucket{} {n}", labels_with(Some(format!("le=\"{bound}\""))));
                    }
                    let _ = writeln!(out, "{name}_bucket{} {}", labels_with(Some("le=\"+Inf\"".into())), s.count);
                    let _ = writeln!(out, "{name}_sum{} {}", labels_with(None), s.value);
                    let _ = writeln!(out, "{name}_count{} {}", labels_with(None), s.count);
                }
            }
        }
        out
    }

    /// A counter's or gauge's value (a histogram's sample count), for tests and the bench.
    pub fn value(&self, metric: Metric, labels: &[(&str, &str)]) -> Option<f64> {
        let series = self.series.lock().ok()?;
        let wanted: Vec<(String, String)> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut found = None;
        for ((m, l), s) in series.iter() {
            if *m == metric && wanted.iter().all(|w| l.contains(w)) {
                let v = if metric.kind() == Kind::Histogram { s.count as f64 } else { s.value };
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }
}

fn label_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new(&MetricsConfig::default(), "buy")
    }

    #[test]
    fn a_buy_document_has_the_outcome_dimension_and_a_coarse_set_without_the_activity() {
        let event =
            Event::new(Some(7)).outcome(BuyResult::SoldOut).add(Metric::Buys, 1.0).add(Metric::RedisLatency, 0.5);
        let doc = metrics().document(&event, 1_700_000_000_000);
        assert_eq!(doc["Function"], "buy");
        assert_eq!(doc["Activity"], "7");
        assert_eq!(doc["Outcome"], "sold_out");
        assert_eq!(doc["Buys"], 1.0);
        assert_eq!(doc["RedisLatency"], 0.5);
        let directives = doc["_aws"]["CloudWatchMetrics"].as_array().expect("directives");
        assert_eq!(directives[0]["Dimensions"], json!([["Function", "Activity", "Outcome"], ["Function", "Outcome"]]));
        assert_eq!(directives[0]["Metrics"], json!([{"Name": "Buys", "Unit": "Count"}]));
        assert_eq!(directives[1]["Dimensions"], json!([["Function", "Activity"], ["Function"]]));
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }

    #[test]
    fn without_an_activity_only_the_function_dimension_is_declared() {
        let doc = metrics().document(&Event::new(None).add(Metric::RedisLatency, 1.0), 0);
        assert!(doc.get("Activity").is_none());
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Function"]]));
    }

    #[test]
    fn a_distribution_keeps_at_most_a_hundred_values_and_counts_add_up() {
        let mut event = Event::new(Some(1));
        for i in 0..150 {
            event.push(Metric::PipelineLag, f64::from(i));
            event.push(Metric::OrdersWritten, 1.0);
        }
        let doc = metrics().document(&event, 0);
        assert_eq!(doc["PipelineLag"].as_array().map(Vec::len), Some(100));
        assert_eq!(doc["OrdersWritten"], 150.0);
    }

    #[test]
    fn the_registry_counts_what_the_documents_say() {
        let registry = Arc::new(Registry::default());
        let cfg =
            MetricsConfig { sink: Sink { registry: Some(registry.clone()), ..Sink::default() }, ..Default::default() };
        let m = Metrics::new(&cfg, "buy");
        m.emit(Event::new(Some(3)).outcome(BuyResult::Queued).add(Metric::Buys, 1.0));
        m.emit(Event::new(Some(3)).outcome(BuyResult::Queued).add(Metric::Buys, 1.0).add(Metric::RedisLatency, 0.7));
        m.emit(Event::new(Some(3)).outcome(BuyResult::SoldOut).add(Metric::Buys, 1.0));
        assert_eq!(registry.value(Metric::Buys, &[("outcome", "queued"), ("activity", "3")]), Some(2.0));
        assert_eq!(registry.value(Metric::Buys, &[("outcome", "sold_out")]), Some(1.0));
        assert_eq!(registry.value(Metric::RedisLatency, &[("function", "buy")]), Some(1.0));
        let text = registry.render();
        assert!(text.contains("# TYPE flash_buys_total counter"), "{text}");
        assert!(text.contains("flash_buys_total{function=\"buy\",activity=\"3\",outcome=\"queued\"} 2"), "{text}");
        assert!(
            text.contains("flash_redis_latency_milliseconds_bucket{function=\"buy\",activity=\"3\",le=\"1\"} 1"),
            "{text}"
        );
        assert!(text.contains("flash_redis_latency_milliseconds_count{function=\"buy\",activity=\"3\"} 1"), "{text}");
    }

    #[tokio::test]
    async fn latencies_are_collected_inside_an_invocation_only() {
        record_redis(Duration::from_millis(3)); // outside: dropped
        let ((), calls) = calls(async {
            record_redis(Duration::from_millis(2));
            record_mysql(Duration::from_millis(4));
        })
        .await;
        assert_eq!(calls.redis, vec![2.0]);
        assert_eq!(calls.mysql, vec![4.0]);
    }
}
