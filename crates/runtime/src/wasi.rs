//! WASI for functions, denied by default: components built by
//! componentize-js, componentize-py and the like import `wasi:cli`,
//! `wasi:io`, `wasi:clocks`, `wasi:random`, `wasi:filesystem` and
//! `wasi:sockets` whether they use them or not, so all of WASI 0.2 is linked,
//! but a function reaches nothing through it: no preopened directories, no
//! environment or arguments, stdin closed, no sockets and no name lookups.
//! Clocks and randomness work. Stdout and stderr are captured into the
//! invocation's log (a line each, `info` and `warn`), within a byte budget.
//!
//! A guest that waits on a clock (`sleep`, `setTimeout`) blocks the host
//! thread, where the epoch deadline cannot reach it; so every clock wait is
//! cut short at the invocation's deadline, after which the guest is stopped
//! (`timed_out`) at its next loop, call or clock wait.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::LOG_LINES_MAX;
use crate::host::{LogLine, State};

/// Most bytes of log lines kept per invocation, from `log`, stdout and
/// stderr together; the lines past it are dropped, counted, and summed up
/// in one last line.
pub const LOG_BYTES_MAX: usize = 256 << 10;
/// A log message longer than this is cut; a printed line longer than this
/// is cut into pieces of this size.
pub const LOG_LINE_BYTES_MAX: usize = 4 << 10;

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The `log` interface.
    Log,
    Stdout,
    Stderr,
}

/// An invocation's log: lines from the `log` interface and from the
/// guest's stdout and stderr, in the order they were written, within
/// [`LOG_LINES_MAX`] lines and [`LOG_BYTES_MAX`] bytes as they come: what
/// is past them is counted, not kept.
pub(crate) struct LogBook {
    started: Instant,
    pub lines: Vec<LogLine>,
    /// Lines dropped past the budget.
    pub dropped: usize,
    dropped_bytes: usize,
    /// Message bytes of the lines kept.
    bytes: usize,
    partial: [Vec<u8>; 2],
}

impl LogBook {
    pub fn new(started: Instant) -> Self {
        Self { started, lines: Vec::new(), dropped: 0, dropped_bytes: 0, bytes: 0, partial: [Vec::new(), Vec::new()] }
    }

    fn full(&self) -> bool {
        self.lines.len() >= LOG_LINES_MAX || self.bytes >= LOG_BYTES_MAX
    }

    pub fn push(&mut self, level: &'static str, mut message: String, stream: Stream) {
        if self.full() || self.bytes + message.len().min(LOG_LINE_BYTES_MAX) > LOG_BYTES_MAX {
            self.dropped += 1;
            self.dropped_bytes += message.len();
            return;
        }
        cut(&mut message, LOG_LINE_BYTES_MAX);
        self.bytes += message.len();
        let at_us = self.started.elapsed().as_micros() as u64;
        let stream = match stream {
            Stream::Log => None,
            Stream::Stdout => Some("stdout"),
            Stream::Stderr => Some("stderr"),
        };
        self.lines.push(LogLine { level, message, at_us, stream });
    }

    fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let index = usize::from(stream == Stream::Stderr);
        for (i, &byte) in bytes.iter().enumerate() {
            if self.full() {
                // Nothing more is kept: count what the guest goes on printing.
                let rest = &bytes[i..];
                self.dropped_bytes += rest.len();
                self.dropped += rest.iter().filter(|b| **b == b'\n').count();
                return;
            }
            if byte == b'\n' {
                self.end_line(stream);
                continue;
            }
            self.partial[index].push(byte);
            if self.partial[index].len() >= LOG_LINE_BYTES_MAX {
                self.end_line(stream);
            }
        }
    }

    fn end_line(&mut self, stream: Stream) {
        let index = usize::from(stream == Stream::Stderr);
        let line = std::mem::take(&mut self.partial[index]);
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            return;
        }
        let level = match stream {
            Stream::Stderr => "warn",
            _ => "info",
        };
        self.push(level, text.to_string(), stream);
    }

    /// Ends the lines the guest left unfinished and, if any were dropped,
    /// says so in one last line.
    pub fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.end_line(stream);
        }
        if self.dropped > 0 {
            let message = format!(
                "{} log lines ({} bytes) dropped: past this invocation's log budget of {LOG_LINES_MAX} lines \
                 and {LOG_BYTES_MAX} bytes (log less, or summarise)",
                self.dropped, self.dropped_bytes
            );
            let at_us = self.started.elapsed().as_micros() as u64;
            self.lines.push(LogLine { level: "warn", message, at_us, stream: None });
        }
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let end = (0..=max).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.truncate(end);
    }
}

pub(crate) type SharedLog = Arc<Mutex<LogBook>>;

pub(crate) fn lock(log: &SharedLog) -> MutexGuard<'_, LogBook> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// The guest's stdout or stderr: every byte goes to the invocation's log.
/// It never refuses a write, so a chatty guest is not failed for it; what
/// is past the budget is dropped and counted.
#[derive(Clone)]
struct Capture {
    log: SharedLog,
    stream: Stream,
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        lock(&self.log).write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(LOG_LINE_BYTES_MAX * 4)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        lock(&self.log).write(self.stream, bytes);
        std::task::Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The guest's monotonic clock: nanoseconds since the invocation started.
struct Monotonic(Instant);

impl HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// What a store needs for WASI: the context and its resource table.
pub(crate) struct Wasi {
    ctx: WasiCtx,
    pub table: ResourceTable,
    started: Instant,
    /// When the invocation's deadline falls; clock waits end there.
    pub deadline: Instant,
}

impl Wasi {
    /// The WASI of one invocation: nothing reachable but clocks,
    /// randomness, and the captured stdout and stderr.
    pub fn new(log: &SharedLog, started: Instant, timeout: Duration) -> Self {
        let ctx = WasiCtxBuilder::new()
            .stdout(Capture { log: log.clone(), stream: Stream::Stdout })
            .stderr(Capture { log: log.clone(), stream: Stream::Stderr })
            .monotonic_clock(Monotonic(started))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self { ctx, table: ResourceTable::new(), started, deadline: started + timeout }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi.ctx, table: &mut self.wasi.table }
    }
}

/// A clock wait cut short at the deadline.
struct Wait(tokio::time::Instant);

#[wasmtime_wasi::async_trait]
impl Pollable for Wait {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.0).await;
    }
}

/// A clock subscription; past the deadline, a trap (`timed_out`).
fn wait(state: &mut State, duration: Duration) -> wasmtime::Result<Resource<DynPollable>> {
    let remaining = state.wasi.deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(wasmtime::Trap::Interrupt.into());
    }
    let until = tokio::time::Instant::now() + duration.min(remaining);
    let wait = state.wasi.table.push(Wait(until))?;
    wasmtime_wasi::p2::subscribe(&mut state.wasi.table, wait)
}

/// The interface as wasmtime-wasi names it (guests importing any 0.2.x
/// version are linked to it).
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Links WASI 0.2 (synchronous), then replaces the monotonic clock's two
/// subscriptions with ones that end at the invocation's deadline.
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap("subscribe-duration", |mut store, (nanos,): (u64,)| {
        Ok((wait(store.data_mut(), Duration::from_nanos(nanos))?,))
    })?;
    clock.func_wrap("subscribe-instant", |mut store, (when,): (u64,)| {
        let state: &mut State = store.data_mut();
        let now = state.wasi.started.elapsed().as_nanos() as u64;
        Ok((wait(state, Duration::from_nanos(when.saturating_sub(now)))?,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(book: &LogBook) -> Vec<(&str, &str, Option<&str>)> {
        book.lines.iter().map(|l| (l.level, l.message.as_str(), l.stream)).collect()
    }

    #[test]
    fn printed_lines_become_log_lines_in_order_with_their_stream() {
        let mut book = LogBook::new(Instant::now());
        book.write(Stream::Stdout, b"one\r\ntw");
        book.write(Stream::Stderr, b"oops\n\n  \n");
        book.push("debug", "from log".into(), Stream::Log);
        book.write(Stream::Stdout, b"o\nunfinished");
        book.finish();
        assert_eq!(
            messages(&book),
            [
                ("info", "one", Some("stdout")),
                ("warn", "oops", Some("stderr")),
                ("debug", "from log", None),
                ("info", "two", Some("stdout")),
                ("info", "unfinished", Some("stdout")),
            ]
        );
    }

    #[test]
    fn output_past_the_budget_is_dropped_and_counted_and_long_lines_are_cut() {
        let mut book = LogBook::new(Instant::now());
        book.write(Stream::Stdout, &vec![b'x'; LOG_LINE_BYTES_MAX + 10]);
        book.finish();
        assert_eq!(book.lines.iter().map(|l| l.message.len()).collect::<Vec<_>>(), [LOG_LINE_BYTES_MAX, 10]);
        let line = "y".repeat(99) + "\n";
        for _ in 0..LOG_LINES_MAX + 50 {
            book.write(Stream::Stdout, line.as_bytes());
        }
        assert!(book.dropped >= 50, "{}", book.dropped);
        assert_eq!(book.lines.len(), LOG_LINES_MAX);
    }

    // Issue 16, finding 5: log lines are bounded in bytes as they come, not
    // only in number; what is dropped is said in one last line.
    #[test]
    fn finding_5_log_bytes_are_bounded_as_they_come_with_one_line_saying_what_was_dropped() {
        let mut book = LogBook::new(Instant::now());
        for _ in 0..500 {
            book.push("info", "z".repeat(64 << 10), Stream::Log);
            book.write(Stream::Stderr, &vec![b'e'; 10_000]);
        }
        book.write(Stream::Stdout, b"late\n");
        book.finish();
        let kept: usize = book.lines.iter().map(|l| l.message.len()).sum();
        let (last, kept_lines) = book.lines.split_last().unwrap();
        assert!(kept_lines.iter().all(|l| l.message.len() <= LOG_LINE_BYTES_MAX));
        assert!(kept - last.message.len() <= LOG_BYTES_MAX, "{kept}");
        assert!(book.dropped > 400, "{}", book.dropped);
        assert_eq!(last.level, "warn");
        assert!(
            last.message.starts_with(&format!("{} log lines (", book.dropped))
                && last.message.contains(&format!("log budget of {LOG_LINES_MAX} lines and {LOG_BYTES_MAX} bytes")),
            "{}",
            last.message
        );
        assert_eq!(book.lines.iter().filter(|l| l.message.contains("dropped")).count(), 1);
    }
}
