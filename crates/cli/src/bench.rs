//! `glassbox bench …`: measurements of this build on this machine.

mod store;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Recorder append throughput (durable group commit) and lookup latency
    /// of correlation chains, on a store of a given size.
    Store(store::StoreBenchArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Store(args) => store::run(args).await,
    }
}
