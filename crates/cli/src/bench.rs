//! `glassbox bench …`: measurements of this build on this machine.

mod anomaly;
mod audit;
mod connections;
mod functions;
mod mqtt;
mod nab;
mod store;
mod trace;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Recorder append throughput (durable group commit) and lookup latency
    /// of correlation chains, on a store of a given size.
    Store(store::StoreBenchArgs),
    /// N publishers -> M subscribers on any MQTT broker (this one or a peer
    /// such as Mosquitto): delivered messages/s, loss and latency percentiles.
    Mqtt(mqtt::MqttBenchArgs),
    /// Many idle MQTT connections to any broker: accept rate, and the
    /// broker's resident memory per connection (given its --pid).
    Connections(connections::ConnectionsBenchArgs),
    /// The function runtime's overhead per invocation (fresh instance, call,
    /// outcome), in-process, on a trivial component or the one given.
    Functions(functions::FunctionsBenchArgs),
    /// The streaming anomaly detector on labelled synthetic series:
    /// precision, recall, detection delay per kind, and points/s; or, with
    /// --nab DIR, on the Numenta Anomaly Benchmark's series by its rules.
    Anomaly(anomaly::AnomalyBenchArgs),
    /// A running server's trace answers for long chains, over HTTP.
    Trace(trace::TraceBenchArgs),
    /// `audit verify --data-dir` over a log of a million entries (written
    /// through the store, with signed checkpoints): wall and CPU time.
    Audit(audit::AuditBenchArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Store(args) => store::run(args).await,
        BenchCommand::Mqtt(args) => mqtt::run(args).await,
        BenchCommand::Connections(args) => connections::run(args).await,
        BenchCommand::Functions(args) => functions::run(args).await,
        BenchCommand::Anomaly(args) => anomaly::run(args).await,
        BenchCommand::Trace(args) => trace::run(args).await,
        BenchCommand::Audit(args) => audit::run(args).await,
    }
}
