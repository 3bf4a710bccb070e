//! The operator's path to a consortium with the real binary: every member `keygen`s, one
//! `genesis` lists their public keys, each member `init`s its config with its peers, and the
//! started processes agree on one chain. Also the commands' refusals (one readable line,
//! exit ≠ 0).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_xinyi-node");

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn keygen_genesis_init_start_forms_a_consortium() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let orgs = [
        ("gz-credit", "agency", 1),
        ("credit-china", "credit_china", 1),
        ("gsxt", "gsxt", 1),
        ("bank-a", "bank", 0),
    ];
    let mut specs = vec![];
    for (o, role, power) in orgs {
        let (ok, public, err) = run(d, &["keygen", "--out", &format!("{o}.key")]);
        assert!(ok, "{err}");
        assert_eq!(public.len(), 64, "{public}");
        specs.push(format!("{o}:{role}:{public}:{power}"));
    }
    // A key is never overwritten.
    let (ok, _, err) = run(d, &["keygen", "--out", "gsxt.key"]);
    assert!(!ok && err.contains("refusing to overwrite"), "{err}");
    // A bad member spec is one readable line.
    let (ok, _, err) = run(
        d,
        &["genesis", "--org", "x:wizard:00:1", "--out", "bad.json"],
    );
    assert!(
        !ok && err.lines().count() == 1 && err.contains("wizard"),
        "{err}"
    );
    let mut args = vec![
        "genesis",
        "--name",
        "xinyi/deploy-test",
        "--out",
        "genesis.json",
    ];
    for s in &specs {
        args.push("--org");
        args.push(s);
    }
    let (ok, out, err) = run(d, &args);
    assert!(ok, "{err}");
    assert!(out.contains("4 organisations, 3 validators"), "{out}");

    let http: Vec<_> = orgs.iter().map(|_| free_addr()).collect();
    let p2p: Vec<_> = orgs.iter().map(|_| free_addr()).collect();
    // A key that is not the genesis's for that organisation is refused.
    let (ok, _, err) = run(
        d,
        &[
            "init",
            "--dir",
            "wrong",
            "--org",
            "gsxt",
            "--key",
            "bank-a.key",
            "--genesis",
            "genesis.json",
            "--p2p",
            "127.0.0.1:1",
        ],
    );
    assert!(!ok && err.contains("but the genesis gives gsxt"), "{err}");
    for (i, (o, _, _)) in orgs.iter().enumerate() {
        let mut args: Vec<String> = [
            "init",
            "--dir",
            o,
            "--org",
            o,
            "--key",
            &format!("{o}.key"),
            "--genesis",
            "genesis.json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--http".into(), http[i].to_string()]);
        args.extend(["--p2p".into(), p2p[i].to_string()]);
        for (j, (p, _, _)) in orgs.iter().enumerate() {
            if j != i {
                args.extend(["--peer".into(), format!("{p}={}", p2p[j])]);
            }
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = run(d, &a);
        assert!(ok, "{o}: {err}");
    }
    let mut procs = Procs(vec![]);
    for (o, _, _) in orgs {
        let log = std::fs::File::create(d.join(format!("{o}.log"))).unwrap();
        procs.0.push(
            Command::new(BIN)
                .current_dir(d)
                .args(["start", "--config", &format!("{o}/xinyi.toml")])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let members: Vec<Member> = orgs
        .iter()
        .zip(&http)
        .map(|((o, _, _), h)| Member {
            org: o.to_string(),
            url: format!("http://{h}"),
        })
        .collect();
    wait_serving(&members);
    let roles: Vec<String> = members
        .iter()
        .map(|m| health(m)["role"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(roles, ["validator", "validator", "validator", "follower"]);
    // They agree: the block at height 2 is the same everywhere.
    wait_until("one block 2 on every member", || {
        let hs: std::collections::BTreeSet<String> = members
            .iter()
            .filter_map(|m| get(&format!("{}/v1/blocks/2", m.url)))
            .map(|b| b["header_hash"].to_string())
            .collect();
        hs.len() == 1
            && members
                .iter()
                .all(|m| get(&format!("{}/v1/blocks/2", m.url)).is_some())
    });
}
