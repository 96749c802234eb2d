//! Which PUBLISHes wait for the disk, and what waits for it (decisions 0030
//! and 0031): the broker records a batch through
//! `Recorder::ingest_committed` whenever anyone is answered for it, routes
//! it once committed and acknowledges it once durable; through
//! `ingest_unanswered` only when all of it is QoS 0. A fake recorder notes
//! which call took each topic, and holds the disk back when told to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use glassbox_core::{DisconnectReason, State};
use glassbox_core::{Draft, IdMinter};
use glassbox_gateway::acl::{Acl, Role};
use glassbox_gateway::broker::{Authenticator, Broker, BrokerSettings, Credentials, Login, Recorder};
use glassbox_gateway::client::{self, Options, Reader};
use glassbox_gateway::codec::{Ack, Packet, Properties, Publish, QoS, Subscribe, SubscriptionOptions};
use glassbox_store::{Appended, Committed, Durable, SessionOp, SessionSnapshot, SessionStore, StoreError, Transition};
use tokio::sync::watch;

/// Which of the recorder's calls took a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `ingest`: resolves once on disk.
    Durable,
    /// `ingest_committed`: resolves once committed, with the wait for the disk.
    Committed,
    /// `ingest_unanswered`: nothing waits for the disk.
    Unanswered,
}

/// Each recorded topic, and the call that took it.
#[derive(Default)]
struct Calls(Mutex<Vec<(String, Call)>>);

impl Calls {
    fn of(&self, topic: &str) -> Vec<Call> {
        let calls = self.0.lock().unwrap();
        calls.iter().filter(|(t, _)| t == topic).map(|(_, call)| *call).collect()
    }
}

/// What the fake disk answers: `None` while it holds syncs back.
type Disk = watch::Sender<Option<Result<(), String>>>;

struct FakeRecorder {
    calls: Arc<Calls>,
    minter: IdMinter,
    disk: Arc<Disk>,
    /// The delivery states it was asked to record.
    states: Arc<Mutex<Vec<Transition>>>,
}

impl FakeRecorder {
    fn note(&self, drafts: Vec<Draft>, call: Call) -> Result<Vec<Appended>, StoreError> {
        let mut calls = self.calls.0.lock().unwrap();
        let appended =
            drafts.iter().map(|_| Appended { id: self.minter.mint(), correlationid: String::new(), duplicate: false });
        calls.extend(drafts.iter().map(|d| (d.subject.clone().unwrap_or_default(), call)));
        Ok(appended.collect())
    }
}

#[async_trait]
impl Recorder for FakeRecorder {
    async fn ingest(&self, drafts: Vec<Draft>, _via: &str) -> Result<Vec<Appended>, StoreError> {
        self.note(drafts, Call::Durable)
    }

    async fn ingest_committed(&self, drafts: Vec<Draft>, _via: &str) -> Result<Committed, StoreError> {
        let appended = self.note(drafts, Call::Committed)?;
        let mut disk = self.disk.subscribe();
        let durable = Durable::new(async move {
            let synced = disk.wait_for(Option::is_some).await.map_err(|_| StoreError::Internal("gone".into()))?;
            synced.clone().unwrap_or(Ok(())).map_err(StoreError::Unavailable)
        });
        Ok(Committed { appended, durable })
    }

    async fn ingest_unanswered(&self, drafts: Vec<Draft>, _via: &str) -> Result<Vec<Appended>, StoreError> {
        self.note(drafts, Call::Unanswered)
    }

    async fn record(&self, transitions: Vec<Transition>) -> Result<(), StoreError> {
        self.states.lock().unwrap().extend(transitions);
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

    async fn close(&self) {}
}

struct Anyone;

#[async_trait]
impl Authenticator for Anyone {
    async fn authenticate(&self, _credentials: &Credentials<'_>) -> Result<Login, (DisconnectReason, String)> {
        Ok(Role::Operator.into())
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

/// A broker over the fake recorder: its address, what stops it, and its task.
async fn serve(recorder: FakeRecorder) -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let acl = Acl::new(Vec::new(), Vec::new());
    let broker =
        Broker::open(BrokerSettings::default(), Arc::new(recorder), Arc::new(NoSessions), Arc::new(Anyone), acl)
            .await
            .unwrap();
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
    (addr, stop, served)
}

#[tokio::test]
async fn only_batches_of_qos_0_alone_skip_the_wait_for_the_disk() {
    let calls = Arc::new(Calls::default());
    let disk = Arc::new(watch::Sender::new(Some(Ok(()))));
    let (addr, stop, served) =
        serve(FakeRecorder { calls: calls.clone(), minter: IdMinter::new(), disk, states: Arc::default() }).await;
    let (mut reader, mut writer, _) = client::connect(&addr, &Options::new("answered-test")).await.unwrap();

    for _ in 0..3 {
        writer.send(&publish("t/zero", QoS::AtMostOnce, None)).await.unwrap();
    }
    writer.flush().await.unwrap();
    for _ in 0..500 {
        if calls.of("t/zero").len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(calls.of("t/zero"), [Call::Unanswered; 3], "QoS 0 alone does not wait for the disk");

    writer.send(&publish("t/one", QoS::AtLeastOnce, Some(1))).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(answer(&mut reader).await, Packet::PubAck(_)));
    assert_eq!(calls.of("t/one"), [Call::Committed], "a QoS 1 PUBACK waits for the disk");

    // Sent in one write, so read as one batch: a batch holding any QoS 1
    // PUBLISH waits (were the two read apart, each would still be right).
    writer.send(&publish("t/mixed-zero", QoS::AtMostOnce, None)).await.unwrap();
    writer.send(&publish("t/mixed-one", QoS::AtLeastOnce, Some(2))).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(answer(&mut reader).await, Packet::PubAck(_)));
    assert_eq!(calls.of("t/mixed-one"), [Call::Committed]);

    writer.send(&publish("t/two", QoS::ExactlyOnce, Some(3))).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(answer(&mut reader).await, Packet::PubRec(_)));
    assert_eq!(calls.of("t/two"), [Call::Committed], "a QoS 2 PUBREC waits for the disk");
    writer.send(&Packet::PubRel(Ack::new(3))).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(answer(&mut reader).await, Packet::PubComp(_)));

    drop((reader, writer));
    drop(stop);
    served.await.unwrap();
}

#[tokio::test]
async fn subscribers_get_a_message_once_committed_and_its_publisher_a_puback_once_it_is_on_disk() {
    let disk = Arc::new(watch::Sender::new(None));
    let recorder =
        FakeRecorder { calls: Arc::default(), minter: IdMinter::new(), disk: disk.clone(), states: Arc::default() };
    let (addr, stop, served) = serve(recorder).await;
    let (mut reader, mut writer, _) = client::connect(&addr, &Options::new("held-disk")).await.unwrap();
    let filters = vec![("t/held".to_string(), SubscriptionOptions::qos(QoS::AtMostOnce))];
    let subscribe = Subscribe { packet_id: 1, properties: Properties::default(), filters };
    writer.send(&Packet::Subscribe(subscribe)).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(answer(&mut reader).await, Packet::SubAck(_)));

    // The client is its own subscriber: the message comes back while the
    // disk holds its sync, and the PUBACK only once the disk has it.
    writer.send(&publish("t/held", QoS::AtLeastOnce, Some(2))).await.unwrap();
    writer.flush().await.unwrap();
    match answer(&mut reader).await {
        Packet::Publish(delivered) => assert_eq!(delivered.topic, "t/held"),
        other => panic!("the message, routed once committed, came first; got {other:?}"),
    }
    let early = tokio::time::timeout(Duration::from_millis(300), reader.next()).await;
    assert!(early.is_err(), "no PUBACK before the disk has the message: {early:?}");
    disk.send_replace(Some(Ok(())));
    assert!(matches!(answer(&mut reader).await, Packet::PubAck(ack) if ack.packet_id == 2));

    // A disk that fails: the message was routed, but its publisher is never
    // acknowledged; the connection closes so that the client sends it again.
    disk.send_replace(None);
    writer.send(&publish("t/held", QoS::AtLeastOnce, Some(3))).await.unwrap();
    writer.flush().await.unwrap();
    assert!(matches!(answer(&mut reader).await, Packet::Publish(_)));
    disk.send_replace(Some(Err("the disk failed".into())));
    let closed = tokio::time::timeout(Duration::from_secs(5), reader.next()).await.expect("closed in time");
    assert!(closed.is_err(), "closed without a PUBACK: {closed:?}");

    drop((reader, writer));
    drop(stop);
    served.await.unwrap();
}

/// A delivery's `in_transit` and its end go to the recorder as one state
/// (the end, carrying when it went in transit), for a session made by this
/// connection and for one resumed by a later connection alike.
#[tokio::test]
async fn a_resumed_session_records_each_delivery_as_one_state() {
    let disk = Arc::new(watch::Sender::new(Some(Ok(()))));
    let states = Arc::new(Mutex::new(Vec::new()));
    let recorder = FakeRecorder { calls: Arc::default(), minter: IdMinter::new(), disk, states: states.clone() };
    let (addr, stop, served) = serve(recorder).await;
    let options = Options { clean_start: false, ..Options::new("resumer") };

    for (round, packet_id) in [(1, 10), (2, 20)] {
        let (mut reader, mut writer, connack) = client::connect(&addr, &options).await.unwrap();
        assert_eq!(connack.session_present, round == 2, "round {round}");
        if round == 1 {
            let filters = vec![("t/resumed".to_string(), SubscriptionOptions::qos(QoS::AtLeastOnce))];
            let subscribe = Subscribe { packet_id: 1, properties: Properties::default(), filters };
            writer.send(&Packet::Subscribe(subscribe)).await.unwrap();
            writer.flush().await.unwrap();
            assert!(matches!(answer(&mut reader).await, Packet::SubAck(_)));
        }
        // Its own subscriber: the message comes back, and is acknowledged.
        writer.send(&publish("t/resumed", QoS::AtLeastOnce, Some(packet_id))).await.unwrap();
        writer.flush().await.unwrap();
        for _ in 0..2 {
            match answer(&mut reader).await {
                Packet::Publish(delivered) => {
                    writer.send(&Packet::PubAck(Ack::new(delivered.packet_id.unwrap()))).await.unwrap();
                    writer.flush().await.unwrap();
                }
                Packet::PubAck(_) => {}
                other => panic!("round {round}: {other:?}"),
            }
        }
        let delivered = |states: &[Transition]| states.iter().filter(|t| t.state == State::Delivered).count();
        for _ in 0..500 {
            if delivered(&states.lock().unwrap()) == round {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop((reader, writer));
    }

    let kinds: Vec<_> =
        (states.lock().unwrap().iter()).map(|t| (t.state, t.target.clone(), t.in_transit_at.is_some())).collect();
    let one_state = (State::Delivered, Some("resumer".to_string()), true);
    assert_eq!(kinds, [one_state.clone(), one_state], "no in_transit recorded apart from its delivery");
    drop(stop);
    served.await.unwrap();
}
