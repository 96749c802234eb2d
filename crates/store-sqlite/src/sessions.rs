//! `sessions.db`: the gateway's durable session state, written by one thread
//! in grouped transactions. `synchronous=NORMAL` in WAL mode: a commit
//! survives a crash of the process (the case that matters for a restart);
//! a power loss may lose the last commits, as it may for Mosquitto's
//! autosave. Published messages themselves are in the recorder, fsync'd
//! (QoS 0 ones within 100 ms: decision 0030).

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use glassbox_store::{SessionOp, SessionSnapshot, SessionStore, StoreError};
use rusqlite::{Connection, Transaction, params};
use tokio::sync::{mpsc, oneshot};

use super::schema;

/// The session file's name inside the data directory.
pub const SESSIONS_FILE_NAME: &str = "sessions.db";
/// Changes waiting for the writer; `apply` waits beyond this.
const QUEUE_MAX: usize = 16_384;
/// Most changes in one transaction.
const BATCH_MAX: usize = 4096;

enum Command {
    /// Changes, and who waits for their commit, if anyone.
    Apply(Vec<SessionOp>, Option<oneshot::Sender<Result<(), StoreError>>>),
    Flush(oneshot::Sender<Result<(), StoreError>>),
}

/// The embedded session store. Open it after [`super::SqliteStore`], whose
/// lock keeps other processes out of the data directory, and close it
/// before that store closes, which frees the directory.
pub struct SqliteSessions {
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Mutex<Connection>,
}

impl SqliteSessions {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(SESSIONS_FILE_NAME);
        let opened = |e: String| StoreError::Unavailable(format!("cannot open {}: {e}", path.display()));
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(conn)
        };
        let mut writer = open().map_err(|e| opened(e.to_string()))?;
        schema::migrate(&mut writer, schema::SESSIONS).map_err(opened)?;
        let reader = open().map_err(|e| opened(e.to_string()))?;
        let (commands, rx) = mpsc::channel(QUEUE_MAX);
        let writer = std::thread::Builder::new()
            .name("sessions-writer".into())
            .spawn(move || write_loop(writer, rx))
            .map_err(|e| StoreError::Internal(format!("cannot start the sessions writer: {e}")))?;
        Ok(Self { commands: Mutex::new(Some(commands)), writer: Mutex::new(Some(writer)), reader: Mutex::new(reader) })
    }

    async fn send(&self, command: Command) -> Result<(), StoreError> {
        let sender = self.commands.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sender = sender.ok_or_else(|| StoreError::Unavailable("the session store is closed".into()))?;
        sender.send(command).await.map_err(|_| StoreError::Unavailable("the sessions writer has stopped".into()))
    }
}

fn write_loop(mut conn: Connection, mut rx: mpsc::Receiver<Command>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while rx.blocking_recv_many(&mut batch, BATCH_MAX) > 0 {
        let result = conn.transaction().and_then(|tx| {
            for command in &batch {
                if let Command::Apply(ops, _) = command {
                    ops.iter().try_for_each(|op| apply(&tx, op))?;
                }
            }
            tx.commit()
        });
        let failure = result.err().map(|e| {
            tracing::error!(error = %e, "could not write session state");
            format!("session state not written: {e}")
        });
        for command in batch.drain(..) {
            if let Command::Flush(reply) | Command::Apply(_, Some(reply)) = command {
                let _ = reply.send(failure.clone().map_or(Ok(()), |e| Err(StoreError::Unavailable(e))));
            }
        }
    }
}

fn apply(tx: &Transaction<'_>, op: &SessionOp) -> rusqlite::Result<()> {
    match op {
        SessionOp::PutSession { client_id, state } => tx
            .prepare_cached("INSERT OR REPLACE INTO sessions (client_id, state) VALUES (?1, ?2)")?
            .execute(params![client_id, state])?,
        SessionOp::DeleteSession { client_id } => {
            tx.prepare_cached("DELETE FROM queued WHERE client_id = ?1")?.execute([client_id])?;
            tx.prepare_cached("DELETE FROM subscriptions WHERE client_id = ?1")?.execute([client_id])?;
            tx.prepare_cached("DELETE FROM sessions WHERE client_id = ?1")?.execute([client_id])?
        }
        SessionOp::Subscribe { client_id, filter, options } => tx
            .prepare_cached("INSERT OR REPLACE INTO subscriptions (client_id, filter, options) VALUES (?1, ?2, ?3)")?
            .execute(params![client_id, filter, options])?,
        SessionOp::Unsubscribe { client_id, filter } => tx
            .prepare_cached("DELETE FROM subscriptions WHERE client_id = ?1 AND filter = ?2")?
            .execute(params![client_id, filter])?,
        SessionOp::Enqueue { client_id, seq, message } => tx
            .prepare_cached("INSERT OR REPLACE INTO queued (client_id, seq, message) VALUES (?1, ?2, ?3)")?
            .execute(params![client_id, *seq as i64, message])?,
        SessionOp::Dequeue { client_id, seq } => tx
            .prepare_cached("DELETE FROM queued WHERE client_id = ?1 AND seq = ?2")?
            .execute(params![client_id, *seq as i64])?,
        SessionOp::Retain { topic, message: Some(message) } => tx
            .prepare_cached("INSERT OR REPLACE INTO retained (topic, message) VALUES (?1, ?2)")?
            .execute(params![topic, message])?,
        SessionOp::Retain { topic, message: None } => {
            tx.prepare_cached("DELETE FROM retained WHERE topic = ?1")?.execute([topic])?
        }
    };
    Ok(())
}

fn load(conn: &Connection) -> rusqlite::Result<SessionSnapshot> {
    let pairs = |sql: &str| -> rusqlite::Result<Vec<(String, Vec<u8>)>> {
        conn.prepare(sql)?.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
    };
    let sessions = pairs("SELECT client_id, state FROM sessions")?;
    let retained = pairs("SELECT topic, message FROM retained")?;
    let subscriptions = conn
        .prepare("SELECT client_id, filter, options FROM subscriptions")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let queued = conn
        .prepare("SELECT client_id, seq, message FROM queued ORDER BY client_id, seq")?
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(SessionSnapshot { sessions, subscriptions, queued, retained })
}

#[async_trait]
impl SessionStore for SqliteSessions {
    async fn apply(&self, ops: Vec<SessionOp>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.send(Command::Apply(ops, None)).await
    }

    async fn commit(&self, ops: Vec<SessionOp>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (reply, done) = oneshot::channel();
        self.send(Command::Apply(ops, Some(reply))).await?;
        done.await.map_err(|_| StoreError::Unavailable("the sessions writer stopped before committing".into()))?
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Flush(reply)).await?;
        done.await.map_err(|_| StoreError::Unavailable("the sessions writer stopped before committing".into()))?
    }

    async fn load(&self) -> Result<SessionSnapshot, StoreError> {
        // Called once at start, before the broker accepts connections.
        let conn = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        load(&conn).map_err(|e| StoreError::Internal(format!("loading sessions: {e}")))
    }

    async fn close(&self) {
        // The writer commits what it holds and stops when its queue closes.
        drop(self.commands.lock().unwrap_or_else(|e| e.into_inner()).take());
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_session_store_keeps_what_was_queued_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteSessions::open(dir.path()).unwrap();
        let put = |n: u32| vec![SessionOp::PutSession { client_id: format!("c-{n}"), state: vec![1] }];
        store.apply(put(1)).await.unwrap();
        store.close().await;
        let refused = store.apply(put(2)).await.unwrap_err();
        assert!(refused.to_string().contains("closed"), "{refused}");
        store.close().await;
        let reopened = SqliteSessions::open(dir.path()).unwrap();
        let names: Vec<_> = reopened.load().await.unwrap().sessions.into_iter().map(|(id, _)| id).collect();
        assert_eq!(names, ["c-1"], "queued before the close: committed");
    }

    // Issue 16, finding 7: subscriptions written inside a session's JSON
    // state (schema 1) move to their own rows, one per subscription.
    #[tokio::test]
    async fn migration_2_moves_subscriptions_out_of_the_session_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut conn = Connection::open(dir.path().join(SESSIONS_FILE_NAME)).unwrap();
            schema::migrate(&mut conn, &schema::SESSIONS[..1]).unwrap();
            let state =
                br#"{"expiry":60,"device":"d1","subscriptions":{"a/#":{"qos":1},"b/+":{"qos":0,"no_local":true}}}"#;
            conn.execute("INSERT INTO sessions (client_id, state) VALUES ('d1', ?1)", [&state[..]]).unwrap();
        }
        let sessions = SqliteSessions::open(dir.path()).unwrap();
        let mut snapshot = sessions.load().await.unwrap();
        snapshot.subscriptions.sort();
        let rows: Vec<(&str, &str, serde_json::Value)> = snapshot
            .subscriptions
            .iter()
            .map(|(c, f, o)| (c.as_str(), f.as_str(), serde_json::from_slice(o).unwrap()))
            .collect();
        assert_eq!(
            rows,
            [
                ("d1", "a/#", serde_json::json!({"qos": 1})),
                ("d1", "b/+", serde_json::json!({"qos": 0, "no_local": true}))
            ]
        );
        let state: serde_json::Value = serde_json::from_slice(&snapshot.sessions[0].1).unwrap();
        assert_eq!(state, serde_json::json!({"expiry": 60, "device": "d1"}));

        let op = |filter: &str| SessionOp::Unsubscribe { client_id: "d1".into(), filter: filter.into() };
        sessions.apply(vec![op("a/#")]).await.unwrap();
        sessions.apply(vec![SessionOp::DeleteSession { client_id: "d1".into() }]).await.unwrap();
        sessions.flush().await.unwrap();
        assert!(sessions.load().await.unwrap().subscriptions.is_empty());
    }
}
