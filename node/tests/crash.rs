//! Crash recovery with real processes: four `xinyi-node` validators on 127.0.0.1; one is made
//! to abort (as `kill -9` would: no flush, no destructors) right after consensus finalized a
//! block and the ledger applied it in memory, before sled was written
//! (`XINYI_FAILPOINT=commit.before_store@H`). The other three keep committing; the crashed
//! node is restarted from its consensus WAL and sled, catches up, agrees on every block, and
//! serves every entry acknowledged while it was down.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;
use xinyi_ledger::sample::{sample_firm, SampleConsortium};
use xinyi_node::config::Config;

/// Kills every node it holds when dropped (a failed assertion leaves no process behind).
struct Procs(Vec<Option<Child>>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(cfg: &Config, failpoint: Option<&str>, log: &str) -> Child {
    let home = cfg.key_file.parent().unwrap();
    let out = std::fs::File::create(home.join(log)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xinyi-node"));
    cmd.args(["start", "--config"])
        .arg(home.join("xinyi.toml"))
        .env("RUST_LOG", "info,sled=warn")
        .env_remove("XINYI_FAILPOINT")
        .stdout(Stdio::null())
        .stderr(out);
    if let Some(fp) = failpoint {
        cmd.env("XINYI_FAILPOINT", fp);
    }
    cmd.spawn().unwrap()
}

#[test]
fn validator_killed_between_finalization_and_sled_write_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let c = SampleConsortium::new(b"crash-test", 4, now_ms() - 1_000);
    let nodes = ["gz-credit", "agency-2", "agency-3", "agency-4"];
    let cfgs = configs(dir.path(), &c, &nodes, "gz-credit");
    let members: Vec<Member> = cfgs.iter().map(member).collect();
    const CRASH_AT: u64 = 3;
    let mut procs = Procs(
        cfgs.iter()
            .enumerate()
            .map(|(i, cfg)| {
                let fp = (i == 3).then(|| format!("commit.before_store@{CRASH_AT}"));
                Some(spawn(cfg, fp.as_deref(), "node.log"))
            })
            .collect(),
    );
    wait_serving(&members);

    // Load: firm registrations, one at a time, through the agency's node. Each is
    // acknowledged only once committed; the victim aborts when it commits block CRASH_AT.
    let mut acked = vec![];
    let submit = |i: u32, via: &Member| {
        let f = sample_firm(i).unwrap();
        let e = c
            .registration("gz-credit", &f, now_ms(), u64::from(i))
            .unwrap();
        let (status, body) = post(&format!("{}/v1/entries", via.url), &write_body(&e));
        assert_eq!(status, 200, "firm {i} via {}: {body}", via.org);
        (body["position"].as_u64().unwrap(), e.id.to_hex())
    };
    let start = Instant::now();
    let mut i = 0;
    let status = loop {
        acked.push(submit(i, &members[0]));
        i += 1;
        if let Some(s) = procs.0[3].as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the failpoint never fired (victim height {})",
            health(&members[3])["height"]
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "the victim must have aborted: {status}");
    procs.0[3] = None;
    let log = std::fs::read_to_string(cfgs[3].key_file.parent().unwrap().join("node.log"))
        .unwrap_or_default();
    assert!(
        log.contains(&format!("failpoint commit.before_store@{CRASH_AT}")),
        "{log}"
    );

    // The survivors (3 of 4 = quorum) keep committing while it is down.
    for _ in 0..3 {
        acked.push(submit(i, &members[1]));
        i += 1;
    }

    // Restart from its WAL and sled: it catches up and agrees.
    procs.0[3] = Some(spawn(&cfgs[3], None, "node-restarted.log"));
    wait_serving(&members[3..]);
    let top = acked.iter().map(|(p, _)| *p).max().unwrap();
    wait_until(
        "all four nodes on one head covering every acknowledged write",
        || {
            let hs: Vec<serde_json::Value> = members.iter().map(health).collect();
            let heads: std::collections::BTreeSet<String> = hs
                .iter()
                .map(|h| h["head"].as_str().unwrap_or("").to_string())
                .collect();
            heads.len() == 1 && hs.iter().all(|h| h["log_size"].as_u64() > Some(top))
        },
    );
    for (p, id) in &acked {
        for m in &members {
            let e = get(&format!("{}/v1/entries/{p}", m.url))
                .unwrap_or_else(|| panic!("{} lacks acknowledged entry {p}", m.org));
            assert_eq!(e["id"].as_str(), Some(id.as_str()), "{} at {p}: {e}", m.org);
        }
    }

    // And it takes part again: a write through the restarted node commits.
    let (p, _) = submit(i, &members[3]);
    wait_until("the write through the restarted node on every node", || {
        members
            .iter()
            .all(|m| get(&format!("{}/v1/entries/{p}", m.url)).is_some_and(|e| e.is_object()))
    });
}
