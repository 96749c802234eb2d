//! Which PUBLISHes wait for the disk (decision 0030): the broker records a
//! batch through `Recorder::ingest` (durable before it resolves) whenever
//! anyone is answered for it, and through `ingest_unanswered` only when all
//! of it is QoS 0. A fake recorder notes which call took each topic.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use glassbox_core::DisconnectReason;
use glassbox_core::{Draft, IdMinter};
use glassbox_gateway::acl::{Acl, Role};
use glassbox_gateway::broker::{Authenticator, Broker, BrokerSettings, Credentials, Recorder};
use glassbox_gateway::client::{self, Options, Reader};
use glassbox_gateway::codec::{Ack, Packet, Properties, Publish, QoS};
use glassbox_store::{Appended, SessionOp, SessionSnapshot, SessionStore, StoreError, Transition};

/// Each recorded topic, and whether its call waited for the disk.
#[derive(Default)]
struct Calls(Mutex<Vec<(String, bool)>>);

impl Calls {
    fn durable(&self, topic: &str) -> Vec<bool> {
        let calls = self.0.lock().unwrap();
        calls.iter().filter(|(t, _)| t == topic).map(|(_, durable)| *durable).collect()
    }
}

struct FakeRecorder {
    calls: Arc<Calls>,
    minter: IdMinter,
}

impl FakeRecorder {
    fn note(&self, drafts: Vec<Draft>, durable: bool) -> Result<Vec<Appended>, StoreError> {
        let mut calls = self.calls.0.lock().unwrap();
        let appended =
            drafts.iter().map(|_| Appended { id: self.minter.mint(), correlationid: String::new(), duplicate: false });
        calls.extend(drafts.iter().map(|d| (d.subject.clone().unwrap_or_default(), durable)));
        Ok(appended.collect())
    }
}

#[async_trait]
impl Recorder for FakeRecorder {
    async fn ingest(&self, drafts: Vec<Draft>, _via: &str) -> Result<Vec<Appended>, StoreError> {
        self.note(drafts, true)
    }

    async fn ingest_unanswered(&self, drafts: Vec<Draft>, _via: &str) -> Result<Vec<Appended>, StoreError> {
        self.note(drafts, false)
    }

    async fn record(&self, _transitions: Vec<Transition>) -> Result<(), StoreError> {
        Ok(())
    }
}

struct NoSessions;

#[async_trait]
impl SessionStore for NoSessions {
    async fn apply(&self, _ops: Vec<SessionOp>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn load(&self) -> Result<SessionSnapshot, StoreError> {
        Ok(SessionSnapshot::default())
    }
}

struct Anyone;

#[async_trait]
impl Authenticator for Anyone {
    async fn authenticate(&self, _credentials: &Credentials<'_>) -> Result<Role, (DisconnectReason, String)> {
        Ok(Role::Operator)
    }
}

fn publish(topic: &str, qos: QoS, packet_id: Option<u16>) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::from_static(b"{\"celsius\":20}"),
    })
}

async fn answer(reader: &mut Reader) -> Packet {
    tokio::time::timeout(Duration::from_secs(5), reader.next()).await.expect("an answer in time").unwrap()
}

#[tokio::test]
async fn only_batches_of_qos_0_alone_skip_the_wait_for_the_disk() {
    let calls = Arc::new(Calls::default());
    let recorder = Arc::new(FakeRecorder { calls: calls.clone(), minter: IdMinter::new() });
    let acl = Acl::new(Vec::new(), Vec::new());
    let broker =
        Broker::open(BrokerSettings::default(), recorder, Arc::new(NoSessions), Arc::new(Anyone), acl).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        broker
            .serve(listener, None, async {
                let _ = stopped.await;
            })
            .await
    });
    let (mut reader, mut writer, _) = client::connect(&addr, &Options::new("answered-test")).await.unwrap();

    for _ in 0..3 {
        writer.send(&publish("t/zero", QoS::AtMostOnce, None)).await.unwrap();
    }
    writer.flush().await.unwrap();
    for _ in 0..500 {
        if calls.durable("t/zero").len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(calls.durable("t/zero"), [false, false, false], "QoS 0 alone does not wait for the disk");

    writer.send(&publish("t/one", QoS::AtLeastOnce, Some(1))).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(answer(&mut reader).await, Packet::PubAck(_)));
    assert_eq!(calls.durable("t/one"), [true], "a QoS 1 PUBACK waits for the disk");

    // Sent in one write, so read as one batch: a batch holding any QoS 1
    // PUBLISH waits (were the two read apart, each would still be right).
    writer.send(&publish("t/mixed-zero", QoS::AtMostOnce, None)).await.unwrap();
    writer.send(&publish("t/mixed-one", QoS::AtLeastOnce, Some(2))).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(answer(&mut reader).await, Packet::PubAck(_)));
    assert_eq!(calls.durable("t/mixed-one"), [true]);

    writer.send(&publish("t/two", QoS::ExactlyOnce, Some(3))).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(answer(&mut reader).await, Packet::PubRec(_)));
    assert_eq!(calls.durable("t/two"), [true], "a QoS 2 PUBREC waits for the disk");
    writer.send(&Packet::PubRel(Ack::new(3))).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(answer(&mut reader).await, Packet::PubComp(_)));

    drop((reader, writer));
    drop(stop);
    served.await.unwrap();
}
