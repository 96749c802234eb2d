#!/usr/bin/env bash
# Builds telemetry.wasm from src/lib.rs with cargo for wasm32-wasip2, which
# links a component (no componentize step), against the repository's WIT
# (wit-bindgen reads ../../wit at compile time). Needs the target:
# `rustup target add wasm32-wasip2`. Its own cargo project, with its own
# Cargo.lock and target/ (the Glassbox workspace excludes it).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked --target wasm32-wasip2
cp target/wasm32-wasip2/release/rust_telemetry.wasm telemetry.wasm
echo "built $(pwd)/telemetry.wasm ($(du -h telemetry.wasm | cut -f1))"
