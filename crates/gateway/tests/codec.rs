//! The MQTT codec against the specifications' rules: round trips of every
//! packet in both versions, byte-exact known encodings, incremental input,
//! and malformed input that must be refused (never a panic).

use bytes::Bytes;
use glassbox_gateway::codec::*;
use rand::{Rng, SeedableRng};

const MAX: usize = 1 << 20;

fn round_trip(packet: Packet, protocol: Protocol) {
    let mut bytes = Vec::new();
    encode(&packet, protocol, &mut bytes);
    let (decoded, used) = decode(&bytes, protocol, MAX).unwrap().expect("a whole packet");
    assert_eq!(used, bytes.len());
    assert_eq!(decoded, packet, "{protocol:?}");
}

fn v5_props() -> Properties {
    Properties {
        message_expiry_interval: Some(30),
        content_type: Some("application/json".into()),
        response_topic: Some("replies/a".into()),
        correlation_data: Some(Bytes::from_static(b"\x01\x02")),
        user_properties: vec![("correlationid".into(), "c-1".into()), ("k".into(), "v".into())],
        ..Properties::default()
    }
}

fn user() -> Properties {
    Properties { user_properties: vec![("k".into(), "v".into())], ..Properties::default() }
}

fn with_reason() -> Properties {
    Properties { reason_string: Some("because".into()), ..user() }
}

fn connect(protocol: Protocol, properties: Properties) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: "thermo-1".into(),
        will: Some(Will {
            topic: "devices/thermo-1/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: properties.clone(),
        }),
        username: Some("thermo-1".into()),
        password: Some(Bytes::from_static(b"secret")),
        properties: match properties == Properties::default() {
            true => properties,
            false => Properties { session_expiry_interval: Some(3600), receive_maximum: Some(10), ..user() },
        },
    }))
}

fn all_packets(protocol: Protocol) -> Vec<Packet> {
    let v5 = protocol == Protocol::V5;
    let pick = |p: Properties| if v5 { p } else { Properties::default() };
    let props = pick(v5_props());
    let ack = if v5 { Ack { packet_id: 7, reason: 0x10, properties: with_reason() } } else { Ack::new(7) };
    let connack = Properties {
        assigned_client_identifier: Some("auto-1".into()),
        server_keep_alive: Some(30),
        receive_maximum: Some(20),
        ..user()
    };
    let subscribe = Properties { subscription_identifiers: vec![7], ..user() };
    vec![
        connect(protocol, props.clone()),
        Packet::ConnAck(ConnAck { session_present: true, reason: 0, properties: pick(connack) }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: "devices/thermo-1/telemetry".into(),
            packet_id: Some(42),
            properties: props.clone(),
            payload: Bytes::from_static(b"{\"c\":21.5}"),
        }),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t".into(),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::new(),
        }),
        Packet::PubAck(ack.clone()),
        Packet::PubRec(ack.clone()),
        Packet::PubRel(ack.clone()),
        Packet::PubComp(Ack::new(9)),
        Packet::Subscribe(Subscribe {
            packet_id: 3,
            properties: pick(subscribe),
            filters: vec![
                ("devices/+/telemetry".into(), SubscriptionOptions::qos(QoS::AtLeastOnce)),
                ("$share/g/alerts/#".into(), SubscriptionOptions::qos(QoS::AtMostOnce)),
            ],
        }),
        Packet::SubAck(SubAck { packet_id: 3, properties: pick(with_reason()), reasons: vec![1, 0x80] }),
        Packet::Unsubscribe(Unsubscribe { packet_id: 4, properties: pick(user()), filters: vec!["a/b".into()] }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 4,
            properties: pick(with_reason()),
            reasons: if protocol == Protocol::V5 { vec![0, 0x11] } else { vec![] },
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ]
}

#[test]
fn every_packet_round_trips_in_3_1_1() {
    for packet in all_packets(Protocol::V311) {
        round_trip(packet, Protocol::V311);
    }
}

#[test]
fn every_packet_round_trips_in_5_0_with_properties() {
    for packet in all_packets(Protocol::V5) {
        round_trip(packet, Protocol::V5);
    }
    let disconnect =
        Properties { session_expiry_interval: Some(0), server_reference: Some("other:1883".into()), ..with_reason() };
    round_trip(Packet::Disconnect(Disconnect { reason: 0x8E, properties: disconnect }), Protocol::V5);
    let auth = Properties {
        authentication_method: Some("SCRAM".into()),
        authentication_data: Some(Bytes::from_static(b"x")),
        ..with_reason()
    };
    round_trip(Packet::Auth(Auth { reason: 0x18, properties: auth }), Protocol::V5);
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    let sub = Subscribe {
        packet_id: 1,
        properties: Properties { subscription_identifiers: vec![268_435_455], ..Default::default() },
        filters: vec![("a/#".into(), options)],
    };
    round_trip(Packet::Subscribe(sub), Protocol::V5);
}

#[test]
fn decodes_a_known_3_1_1_connect_byte_for_byte() {
    // CONNECT, "MQTT" level 4, clean session, keep-alive 60, client id "a".
    let bytes = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'a'];
    let (packet, used) = decode(&bytes, Protocol::V311, MAX).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    let Packet::Connect(c) = &packet else { panic!("{packet:?}") };
    assert_eq!((c.protocol, c.clean_start, c.keep_alive, c.client_id.as_str()), (Protocol::V311, true, 60, "a"));
    let mut again = Vec::new();
    encode(&packet, Protocol::V311, &mut again);
    assert_eq!(again, bytes);
}

#[test]
fn success_acks_use_the_short_form_in_5_0() {
    let mut bytes = Vec::new();
    encode(&Packet::PubAck(Ack::new(1)), Protocol::V5, &mut bytes);
    assert_eq!(bytes, [0x40, 2, 0, 1]);
    bytes.clear();
    encode(&Packet::Disconnect(Disconnect::default()), Protocol::V5, &mut bytes);
    assert_eq!(bytes, [0xE0, 0]);
}

#[test]
fn packets_of_every_length_size_follow_each_other_in_one_buffer() {
    let publish = |size: usize| Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "t/x".into(),
        packet_id: Some(7),
        properties: Properties::default(),
        payload: Bytes::from(vec![0xA5; size]),
    };
    for protocol in [Protocol::V311, Protocol::V5] {
        // The body besides the payload: topic, packet id and (5.0) no properties.
        let overhead = (2 + 3) + 2 + usize::from(protocol == Protocol::V5);
        // Remaining lengths on both sides of each size of the length: 1, 2, 3 and 4 bytes.
        let lengths = [overhead, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152];
        let sizes: Vec<usize> = lengths.iter().map(|length| length - overhead).collect();
        let mut bytes = vec![0xC0, 0]; // a PINGREQ already waiting in the buffer
        for size in &sizes {
            encode(&Packet::Publish(publish(*size)), protocol, &mut bytes);
        }
        for (size, length) in sizes.iter().zip(lengths) {
            let length_bytes = [127, 16_383, 2_097_151, usize::MAX].iter().position(|max| length <= *max).unwrap() + 1;
            assert_eq!(publish_len(&publish(*size), protocol), 1 + length_bytes + length, "{protocol:?}");
        }
        let (mut rest, mut read) = (&bytes[..], Vec::new());
        while let Some((packet, used)) = decode(rest, protocol, 4 * MAX).unwrap() {
            read.push(packet);
            rest = &rest[used..];
        }
        assert!(rest.is_empty(), "{protocol:?}: {} bytes left over", rest.len());
        let want: Vec<_> =
            std::iter::once(Packet::PingReq).chain(sizes.iter().map(|s| Packet::Publish(publish(*s)))).collect();
        assert!(read == want, "{protocol:?}: the packets read back differ");
    }
}

#[test]
fn partial_input_asks_for_more_bytes() {
    let mut bytes = Vec::new();
    encode(&all_packets(Protocol::V5)[2], Protocol::V5, &mut bytes);
    for end in 0..bytes.len() {
        assert_eq!(decode(&bytes[..end], Protocol::V5, MAX), Ok(None), "prefix of {end} bytes");
    }
    bytes.extend_from_slice(&[0xC0, 0]); // a second packet behind the first
    let (_, used) = decode(&bytes, Protocol::V5, MAX).unwrap().unwrap();
    assert_eq!(decode(&bytes[used..], Protocol::V5, MAX).unwrap().unwrap().0, Packet::PingReq);
}

#[test]
fn oversize_packets_are_refused_from_their_header() {
    // A PUBLISH announcing 2 MiB; only the header has arrived.
    let header = [0x30, 0x80, 0x80, 0x80, 0x01];
    let err = decode(&header, Protocol::V311, 1024).unwrap_err();
    assert!(matches!(err, CodecError::TooLarge { max: 1024, .. }), "{err}");
    assert_eq!(err.reason_code(), 0x95);
}

fn refused(bytes: &[u8], protocol: Protocol) -> CodecError {
    decode(bytes, protocol, MAX).expect_err(&format!("{bytes:02x?} must be refused"))
}

#[test]
fn malformed_packets_are_refused_with_a_reason() {
    use Protocol::*;
    let cases: Vec<(&str, Vec<u8>, Protocol)> = vec![
        ("reserved flags on PUBACK", vec![0x41, 2, 0, 1], V311),
        ("PUBREL without its 0010 flags", vec![0x60, 2, 0, 1], V311),
        ("QoS 3 PUBLISH", vec![0x36, 5, 0, 1, b't', 0, 1], V311),
        ("DUP on QoS 0", vec![0x38, 3, 0, 1, b't'], V311),
        ("topic with invalid UTF-8", vec![0x30, 4, 0, 2, 0xC3, 0x28], V311),
        ("topic with U+0000", vec![0x30, 4, 0, 2, b'a', 0], V311),
        ("five-byte remaining length", vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], V311),
        ("bytes after PINGREQ", vec![0xC0, 1, 0], V311),
        ("packet type 0", vec![0x00, 0], V311),
        ("AUTH in 3.1.1", vec![0xF0, 0], V311),
        ("SUBSCRIBE without filters", vec![0x82, 2, 0, 1], V311),
        ("SUBSCRIBE packet id 0", vec![0x82, 6, 0, 0, 0, 1, b'a', 0], V311),
        ("3.1.1 subscription options with reserved bits", vec![0x82, 6, 0, 1, 0, 1, b'a', 0x04], V311),
        ("retain handling 3", vec![0x82, 7, 0, 1, 0, 0, 1, b'a', 0x30], V5),
        ("unknown property", vec![0x40, 5, 0, 1, 0, 2, 0x7F, 0], V5),
        ("duplicate property", vec![0xE0, 12, 0, 10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2], V5),
        ("receive maximum 0", vec![0x20, 5, 0, 0, 3, 0x21, 0, 0], V5),
        ("content type on a PUBACK", vec![0x40, 8, 0, 1, 0, 4, 0x03, 0, 1, b'x'], V5),
        ("two subscription identifiers in SUBSCRIBE", vec![0x82, 10, 0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, b'a', 0], V5),
        ("remaining length not in its shortest form", vec![0xC0, 0x80, 0x00], V311),
        ("property block longer than the packet", vec![0x40, 5, 0, 1, 0, 9, 0x01], V5),
        ("CONNECT reserved flag", vec![0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x03, 0, 60, 0, 1, b'a'], V311),
        (
            "password without user name in 3.1.1",
            vec![0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x42, 0, 60, 0, 1, b'a', 0, 1, b'p'],
            V311,
        ),
        ("will QoS without will", vec![0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x0A, 0, 60, 0, 1, b'a'], V311),
    ];
    for (what, bytes, protocol) in cases {
        let err = decode(&bytes, protocol, MAX);
        assert!(err.is_err(), "{what}: accepted as {err:?}");
    }
}

#[test]
fn unsupported_protocol_levels_are_named() {
    let bytes = [0x10, 15, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 1, b'a'];
    let err = refused(&bytes, Protocol::V311);
    assert_eq!(err, CodecError::UnsupportedProtocol { name: "MQIsdp".into(), level: 3 });
    assert_eq!(err.reason_code(), 0x84);
}

/// A deterministic fuzz: random bytes and mutations of valid packets must
/// decode or be refused, never panic, and whatever decodes re-encodes.
#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6c61_7373);
    let mut seeds = Vec::new();
    for protocol in [Protocol::V311, Protocol::V5] {
        for packet in all_packets(protocol) {
            let mut bytes = Vec::new();
            encode(&packet, protocol, &mut bytes);
            seeds.push((bytes, protocol));
        }
    }
    for i in 0..200_000 {
        let (mut bytes, protocol) = seeds[i % seeds.len()].clone();
        if i % 4 == 0 {
            bytes = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
        } else {
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
        }
        if let Ok(Some((packet, _))) = decode(&bytes, protocol, MAX) {
            let mut again = Vec::new();
            encode(&packet, protocol, &mut again);
            let (reparsed, _) = decode(&again, protocol, MAX).unwrap().unwrap();
            assert_eq!(reparsed, packet);
        }
    }
}
