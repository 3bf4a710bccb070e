//! Tests of the libp2p transport (`xinyi_node::p2p`) over real sockets on 127.0.0.1.
//!
//! What they are: end-to-end checks of delivery (channels × recipients), admission (non-members
//! refused), punishment of oversized and malformed frames (the latter from a raw libp2p client
//! speaking `/xinyi/p2p/1` directly, which also checks the framing against specs/p2p.md),
//! reconnection after a restart, rate limiting, membership removal, and a rough throughput
//! print. What they are not: timing assertions — every wait is "until a condition holds" with a
//! generous deadline, and every test is bounded by a timeout.

use commonware_actor::{Feedback, Unreliable};
use commonware_p2p::{Blocker as _, CheckedSender as _, LimitedSender as _, Receiver as _};
use commonware_p2p::{Recipients, Sender as _};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use xinyi_ledger::KeyPair;
use xinyi_node::p2p::{
    codec, engine_public_key, EngineKey, Network, NetworkConfig, P2pReceiver, P2pSender, P2pStats,
    PROTOCOL,
};

const TEST_TIMEOUT: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(30);

fn keypair(i: u8) -> KeyPair {
    KeyPair::from_seed([i; 32])
}

fn ek(k: &KeyPair) -> EngineKey {
    engine_public_key(&k.public()).expect("valid key")
}

fn config(key: &KeyPair, members: &[&KeyPair], dial: &[(&KeyPair, SocketAddr)]) -> NetworkConfig {
    NetworkConfig {
        key: key.clone(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        members: members.iter().map(|k| k.public()).collect(),
        dial: dial.iter().map(|(k, a)| (k.public(), *a)).collect(),
        max_message_bytes: 1 << 20,
        peer_rate_limit_per_sec: 100_000,
        queue_capacity: 1024,
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn recv(rx: &mut P2pReceiver) -> (EngineKey, Vec<u8>) {
    let (k, m) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("message within deadline")
        .expect("receiver open");
    (k, m.as_ref().to_vec())
}

/// Nothing arrives within `d` (a negative check: bounded, not a timing assertion on success).
async fn nothing(rx: &mut P2pReceiver, d: Duration) {
    if let Ok(r) = tokio::time::timeout(d, rx.recv()).await {
        panic!(
            "unexpected message: {:?}",
            r.map(|(k, m)| (k, m.as_ref().to_vec()))
        );
    }
}

fn connected(n: &Network) -> u64 {
    n.stats().connected_peers
}

async fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test finished within its deadline")
}

struct Node {
    net: Network,
    tx: Vec<P2pSender>,
    rx: Vec<P2pReceiver>,
}

async fn node(cfg: NetworkConfig, channels: &[u64], capacity: usize) -> Node {
    let mut net = Network::start(cfg).await.expect("start");
    let mut tx = Vec::new();
    let mut rx = Vec::new();
    for c in channels {
        let (s, r) = net.register(*c, capacity);
        tx.push(s);
        rx.push(r);
    }
    Node { net, tx, rx }
}

/// Member `a` (started from `cfg_a`, receive queue `capacity_a` on channel 0) and member `b`
/// (defaults, dialling `a`), returned once both count the connection.
async fn connected_pair(
    ka: &KeyPair,
    kb: &KeyPair,
    cfg_a: NetworkConfig,
    capacity_a: usize,
) -> (Node, Node) {
    let a = node(cfg_a, &[0], capacity_a).await;
    let b = node(config(kb, &[ka, kb], &[(ka, a.net.local_addr())]), &[0], 64).await;
    wait_until("connected", || {
        connected(&a.net) == 1 && connected(&b.net) == 1
    })
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_exchange_on_two_channels() {
    run(async {
        let (ka, kb, kc) = (keypair(1), keypair(2), keypair(3));
        let all = [&ka, &kb, &kc];
        let mut a = node(config(&ka, &all, &[]), &[0, 1], 64).await;
        let la = a.net.local_addr();
        let mut b = node(config(&kb, &all, &[(&ka, la)]), &[0, 1], 64).await;
        let lb = b.net.local_addr();
        let mut c = node(config(&kc, &all, &[(&ka, la), (&kb, lb)]), &[0, 1], 64).await;
        wait_until("full mesh", || {
            connected(&a.net) == 2 && connected(&b.net) == 2 && connected(&c.net) == 2
        })
        .await;
        assert!(a.net.peers().iter().all(|p| p.connected));
        assert_eq!(a.net.peers().len(), 2);

        // All on channel 0 from a.
        let mut to = a.tx[0].send(Recipients::All, b"all-from-a".to_vec(), false);
        to.sort();
        let mut expect = vec![ek(&kb), ek(&kc)];
        expect.sort();
        assert_eq!(to, expect);
        assert_eq!(recv(&mut b.rx[0]).await, (ek(&ka), b"all-from-a".to_vec()));
        assert_eq!(recv(&mut c.rx[0]).await, (ek(&ka), b"all-from-a".to_vec()));

        // One on channel 1 from b to c (priority lane).
        let to = b.tx[1].send(Recipients::One(ek(&kc)), b"one-b-c".to_vec(), true);
        assert_eq!(to, vec![ek(&kc)]);
        assert_eq!(recv(&mut c.rx[1]).await, (ek(&kb), b"one-b-c".to_vec()));

        // Some on channel 1 from c to a and b; then channel 0 from c to b only.
        let to = c.tx[1].send(
            Recipients::Some(vec![ek(&ka), ek(&kb)]),
            b"some-c".to_vec(),
            false,
        );
        assert_eq!(to.len(), 2);
        assert_eq!(recv(&mut a.rx[1]).await, (ek(&kc), b"some-c".to_vec()));
        assert_eq!(recv(&mut b.rx[1]).await, (ek(&kc), b"some-c".to_vec()));
        c.tx[0].send(Recipients::Some(vec![ek(&kb)]), b"c-b-ch0".to_vec(), false);
        assert_eq!(recv(&mut b.rx[0]).await, (ek(&kc), b"c-b-ch0".to_vec()));

        // Nothing leaked to the wrong channel or recipient.
        nothing(&mut a.rx[0], Duration::from_millis(300)).await;
        nothing(&mut b.rx[1], Duration::from_millis(50)).await;
        nothing(&mut c.rx[0], Duration::from_millis(50)).await;

        // Large message (several MB, one frame) arrives intact.
        let big: Vec<u8> = (0..(3 << 20) / 4)
            .flat_map(|i: u32| i.to_le_bytes())
            .collect();
        let mut cfg_big = config(&keypair(9), &[&keypair(9), &keypair(10)], &[]);
        cfg_big.max_message_bytes = 8 << 20;
        let mut x = node(cfg_big, &[5], 4).await;
        let mut cfg_y = config(
            &keypair(10),
            &[&keypair(9), &keypair(10)],
            &[(&keypair(9), x.net.local_addr())],
        );
        cfg_y.max_message_bytes = 8 << 20;
        let y = node(cfg_y, &[5], 4).await;
        wait_until("x-y connected", || {
            connected(&x.net) == 1 && connected(&y.net) == 1
        })
        .await;
        let mut ytx = y.tx[0].clone();
        ytx.send(Recipients::All, big.clone(), false);
        let (from, got) = recv(&mut x.rx[0]).await;
        assert_eq!(from, ek(&keypair(10)));
        assert!(got == big, "large payload corrupted");

        let s: P2pStats = a.net.stats();
        assert_eq!((s.malformed, s.oversized, s.blocked_peers), (0, 0, 0));
        assert!(s.messages_in >= 1 && s.messages_out >= 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_member_is_refused() {
    run(async {
        let (ka, kb, kx) = (keypair(11), keypair(12), keypair(13));
        let mut a = node(config(&ka, &[&ka, &kb], &[]), &[0], 64).await;
        let la = a.net.local_addr();
        let b = node(config(&kb, &[&ka, &kb], &[(&ka, la)]), &[0], 64).await;
        // x believes a is a member and that it is one too; a does not.
        let x = node(config(&kx, &[&ka, &kx], &[(&ka, la)]), &[0], 64).await;
        wait_until("a refused x", || a.net.stats().refused_connections >= 1).await;
        wait_until("b connected", || {
            connected(&a.net) == 1 && connected(&b.net) == 1
        })
        .await;
        // x never gets a link: its sends reach nobody.
        for _ in 0..5 {
            let to = x.tx[0]
                .clone()
                .send(Recipients::All, b"from-x".to_vec(), false);
            assert!(to.is_empty());
            let to = x.tx[0]
                .clone()
                .send(Recipients::One(ek(&ka)), b"from-x".to_vec(), false);
            assert!(to.is_empty());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(connected(&x.net), 0);
        assert!(!x.net.peers()[0].connected);
        // a lists only b, and b's messages still flow.
        let peers = a.net.peers();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].key, kb.public());
        b.tx[0]
            .clone()
            .send(Recipients::All, b"from-b".to_vec(), false);
        assert_eq!(recv(&mut a.rx[0]).await, (ek(&kb), b"from-b".to_vec()));
        nothing(&mut a.rx[0], Duration::from_millis(200)).await;
        // x keeps redialling with backoff and keeps being refused.
        let before = a.net.stats().refused_connections;
        wait_until("x refused again", || {
            a.net.stats().refused_connections > before
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_blocks_sender() {
    run(async {
        let (ka, kb) = (keypair(21), keypair(22));
        let mut cfg_a = config(&ka, &[&ka, &kb], &[]);
        cfg_a.max_message_bytes = 1024;
        let (mut a, b) = connected_pair(&ka, &kb, cfg_a, 64).await;
        let mut tx = b.tx[0].clone();
        tx.send(Recipients::All, vec![1u8; 1024], false);
        assert_eq!(recv(&mut a.rx[0]).await, (ek(&kb), vec![1u8; 1024]));
        // b's own limit is 1 MiB, a's is 1 KiB.
        tx.send(Recipients::All, vec![2u8; 1025], false);
        wait_until("b blocked by a", || {
            let s = a.net.stats();
            s.oversized == 1 && s.blocked_peers == 1
        })
        .await;
        wait_until("b disconnected", || {
            connected(&a.net) == 0 && connected(&b.net) == 0
        })
        .await;
        let p = &a.net.peers()[0];
        assert!(p.blocked && !p.connected);
        // Later messages from b are not delivered; its redials are refused.
        for _ in 0..5 {
            tx.send(Recipients::All, vec![3u8; 10], false);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        nothing(&mut a.rx[0], Duration::from_millis(300)).await;
        wait_until("b's redial refused", || {
            a.net.stats().refused_connections >= 1
        })
        .await;
        // The local size limit: a rejects its own oversized send without panicking.
        let mut atx = a.tx[0].clone();
        let checked = atx.check(Recipients::All).expect("no outbound rate limit");
        assert_eq!(checked.send(vec![0u8; 2048], false), Unreliable::Rejected);
    })
    .await;
}

/// A raw libp2p client (not our `Network`) holding a member's key: speaks `/xinyi/p2p/1` by hand.
struct RawClient {
    control: libp2p_stream::Control,
    events: tokio::sync::mpsc::UnboundedReceiver<&'static str>,
    peer: libp2p::PeerId,
    _task: tokio::task::JoinHandle<()>,
}

async fn raw_client(key: &KeyPair, target: &KeyPair, addr: SocketAddr) -> RawClient {
    let id = libp2p::identity::Keypair::ed25519_from_bytes(key.seed()).expect("key");
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(id)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let peer = xinyi_node::p2p::peer_id(&target.public()).expect("peer id");
    let ma: libp2p::Multiaddr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", addr.port())
        .parse()
        .expect("multiaddr");
    swarm.dial(ma).expect("dial");
    let control = swarm.behaviour().new_control();
    let (etx, events) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match swarm.select_next_some().await {
                libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } => {
                    let _ = etx.send("connected");
                }
                libp2p::swarm::SwarmEvent::ConnectionClosed { .. } => {
                    let _ = etx.send("closed");
                }
                _ => {}
            }
        }
    });
    RawClient {
        control,
        events,
        peer,
        _task: task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frame_blocks_sender() {
    run(async {
        let (ka, km) = (keypair(31), keypair(32));
        let mut a = node(config(&ka, &[&ka, &km], &[]), &[7], 64).await;
        let mut c = raw_client(&km, &ka, a.net.local_addr()).await;
        assert_eq!(c.events.recv().await, Some("connected"));
        let mut s = c
            .control
            .open_stream(c.peer, libp2p::StreamProtocol::new(PROTOCOL))
            .await
            .expect("stream");
        // The accepting side acknowledges the stream with one byte before frames flow.
        let mut ack = [0u8; 1];
        s.read_exact(&mut ack).await.expect("ack");
        assert_eq!(ack[0], codec::ACK_ACCEPTED);
        // A well-formed frame written by hand per specs/p2p.md is delivered.
        let mut frame = vec![0x01];
        frame.extend_from_slice(&7u64.to_be_bytes());
        frame.extend_from_slice(&5u32.to_be_bytes());
        frame.extend_from_slice(b"hello");
        assert_eq!(frame[..codec::HEADER_LEN], codec::encode_header(7, 5));
        s.write_all(&frame).await.expect("write");
        s.flush().await.expect("flush");
        assert_eq!(recv(&mut a.rx[0]).await, (ek(&km), b"hello".to_vec()));
        // Then garbage: wrong tag.
        s.write_all(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3])
            .await
            .expect("write");
        s.flush().await.expect("flush");
        wait_until("malformed counted and peer blocked", || {
            let st = a.net.stats();
            st.malformed == 1 && st.blocked_peers == 1
        })
        .await;
        assert_eq!(
            tokio::time::timeout(WAIT, c.events.recv())
                .await
                .expect("closed in time"),
            Some("closed")
        );
        assert!(a.net.peers()[0].blocked);
        // A new connection from the blocked key is refused.
        let before = a.net.stats().refused_connections;
        let _c2 = raw_client(&km, &ka, a.net.local_addr()).await;
        wait_until("reconnect refused", || {
            a.net.stats().refused_connections > before
        })
        .await;
        nothing(&mut a.rx[0], Duration::from_millis(200)).await;
        // The engine's blocker, and unblocking, work on the same set.
        let mut blocker = a.net.blocker();
        let mut sub = blocker.blocked();
        let set = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("set")
            .expect("open");
        assert!(set.iter().any(|k| *k == ek(&km)));
        // An engine block on a peer blocked for a transport fault does not make that block
        // expire.
        assert_eq!(blocker.block(ek(&km)), Feedback::Ok);
        tokio::time::sleep(xinyi_node::p2p::ENGINE_BLOCK + Duration::from_secs(1)).await;
        assert!(a.net.peers()[0].blocked, "a transport-fault block expired");
        a.net.unblock(&km.public());
        wait_until("unblocked", || a.net.stats().blocked_peers == 0).await;
        // An engine block lasts ENGINE_BLOCK, then lifts by itself (around an epoch switch the
        // engine blocks honest members that have not switched yet).
        assert_eq!(blocker.block(ek(&km)), Feedback::Ok);
        wait_until("blocked again", || a.net.stats().blocked_peers == 1).await;
        wait_until("engine block expired", || a.net.stats().blocked_peers == 0).await;
        assert!(!a.net.peers()[0].blocked);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_peer_is_reconnected() {
    run(async {
        let (ka, kb) = (keypair(41), keypair(42));
        let a = node(config(&ka, &[&ka, &kb], &[]), &[0], 64).await;
        let la = a.net.local_addr();
        // Only b dials: the reconnection is b's doing.
        let b = node(config(&kb, &[&ka, &kb], &[(&ka, la)]), &[0], 64).await;
        wait_until("connected", || {
            connected(&a.net) == 1 && connected(&b.net) == 1
        })
        .await;
        let Node { net, mut rx, .. } = a;
        b.tx[0]
            .clone()
            .send(Recipients::All, b"before".to_vec(), false);
        assert_eq!(recv(&mut rx[0]).await, (ek(&kb), b"before".to_vec()));
        net.shutdown().await;
        drop(rx);
        wait_until("b sees a gone", || connected(&b.net) == 0).await;

        let mut cfg = config(&ka, &[&ka, &kb], &[]);
        cfg.listen = la;
        let mut a2 = node(cfg, &[0], 64).await;
        assert_eq!(a2.net.local_addr(), la);
        wait_until("reconnected", || {
            connected(&a2.net) == 1 && connected(&b.net) == 1
        })
        .await;
        let mut tx = b.tx[0].clone();
        tx.send(Recipients::All, b"after".to_vec(), false);
        assert_eq!(recv(&mut a2.rx[0]).await, (ek(&kb), b"after".to_vec()));
        assert!(b.net.peers()[0].connected);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_drops_and_counts_excess() {
    run(async {
        let (ka, kb) = (keypair(51), keypair(52));
        let mut cfg_a = config(&ka, &[&ka, &kb], &[]);
        cfg_a.peer_rate_limit_per_sec = 50;
        let (mut a, b) = connected_pair(&ka, &kb, cfg_a, 1000).await;
        let mut tx = b.tx[0].clone();
        const N: u64 = 500;
        for i in 0..N {
            let to = tx.send(Recipients::All, i.to_be_bytes().to_vec(), false);
            assert_eq!(to.len(), 1, "queue of 1024 holds the burst");
        }
        wait_until("all frames processed", || {
            let s = a.net.stats();
            s.messages_in + s.rate_limited >= N
        })
        .await;
        let s = a.net.stats();
        println!(
            "rate limit 50/s, burst of {N}: delivered {}, rate-limited {}",
            s.messages_in, s.rate_limited
        );
        assert!(s.rate_limited > 0 && s.messages_in > 0 && s.messages_in < N);
        assert_eq!(s.blocked_peers, 0, "rate limiting does not block");
        let mut got = 0;
        while tokio::time::timeout(Duration::from_millis(100), a.rx[0].recv())
            .await
            .is_ok()
        {
            got += 1;
        }
        assert_eq!(got, s.messages_in);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_members_removal_disconnects() {
    run(async {
        let (ka, kb, kc) = (keypair(61), keypair(62), keypair(63));
        let all = [&ka, &kb, &kc];
        let mut a = node(config(&ka, &all, &[]), &[0], 64).await;
        let la = a.net.local_addr();
        let b = node(config(&kb, &all, &[(&ka, la)]), &[0], 64).await;
        let c = node(config(&kc, &all, &[(&ka, la)]), &[0], 64).await;
        wait_until("connected", || connected(&a.net) == 2).await;
        a.net.set_members(vec![ka.public(), kb.public()], vec![]);
        wait_until("c disconnected", || {
            connected(&a.net) == 1 && connected(&c.net) == 0
        })
        .await;
        assert_eq!(a.net.peers().len(), 1);
        assert_eq!(a.net.peers()[0].key, kb.public());
        // c redials and is refused; nothing from it is delivered; b still works.
        let before = a.net.stats().refused_connections;
        wait_until("c refused", || a.net.stats().refused_connections > before).await;
        assert!(c.tx[0]
            .clone()
            .send(Recipients::All, b"c".to_vec(), false)
            .is_empty());
        b.tx[0].clone().send(Recipients::All, b"b".to_vec(), false);
        assert_eq!(recv(&mut a.rx[0]).await, (ek(&kb), b"b".to_vec()));
        nothing(&mut a.rx[0], Duration::from_millis(200)).await;
        // Re-admitting c (with a dial address this time) brings it back.
        a.net.set_members(
            vec![ka.public(), kb.public(), kc.public()],
            vec![(kc.public(), c.net.local_addr())],
        );
        wait_until("c back", || {
            connected(&a.net) == 2 && connected(&c.net) == 1
        })
        .await;
    })
    .await;
}

/// Rough throughput on loopback (printed, not asserted): small messages and multi-MB blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_print() {
    run(async {
        let (ka, kb) = (keypair(71), keypair(72));
        let mk = |k: &KeyPair, dial: &[(&KeyPair, SocketAddr)]| {
            let mut c = config(k, &[&ka, &kb], dial);
            c.max_message_bytes = 8 << 20;
            c.peer_rate_limit_per_sec = 10_000_000;
            c.queue_capacity = 4096;
            c
        };
        let mut a = node(mk(&ka, &[]), &[0, 1], 100_000).await;
        let b = node(mk(&kb, &[(&ka, a.net.local_addr())]), &[0, 1], 16).await;
        wait_until("connected", || {
            connected(&a.net) == 1 && connected(&b.net) == 1
        })
        .await;
        let mut tx = b.tx[0].clone();

        async fn push(tx: &mut P2pSender, msg: &[u8]) {
            loop {
                let checked = tx.check(Recipients::All).expect("no outbound limit");
                match checked.send(msg.to_vec(), false) {
                    Unreliable::Outcome(Feedback::Ok) => return,
                    _ => tokio::task::yield_now().await,
                }
            }
        }

        const SMALL: usize = 50_000;
        let msg = vec![7u8; 256];
        let start = Instant::now();
        let recv_task = async {
            for _ in 0..SMALL {
                recv(&mut a.rx[0]).await;
            }
        };
        let send_task = async {
            for _ in 0..SMALL {
                push(&mut tx, &msg).await;
            }
        };
        tokio::join!(recv_task, send_task);
        let el = start.elapsed();
        println!(
            "p2p throughput: {SMALL} x 256 B in {el:?} = {:.0} msgs/s",
            SMALL as f64 / el.as_secs_f64()
        );

        const BIG: usize = 20;
        let block = vec![9u8; 4 << 20];
        let mut tx1 = b.tx[1].clone();
        let start = Instant::now();
        let recv_task = async {
            for _ in 0..BIG {
                let (_, m) = recv(&mut a.rx[1]).await;
                assert_eq!(m.len(), 4 << 20);
            }
        };
        let send_task = async {
            for _ in 0..BIG {
                push(&mut tx1, &block).await;
            }
        };
        tokio::join!(recv_task, send_task);
        let el = start.elapsed();
        println!(
            "p2p throughput: {BIG} x 4 MiB in {el:?} = {:.0} MB/s",
            (BIG * 4) as f64 / el.as_secs_f64()
        );
        assert_eq!(a.net.stats().dropped_in, 0);
    })
    .await;
}
