//! On the local TLS Redis Cluster (`scripts/redis-cluster.sh`): products on different
//! primaries, certificates, NOSCRIPT, the replica wait, and a primary killed during a race.
//!
//! These need the cluster, so they are `#[ignore]`d in the single-node run; `scripts/test.sh`
//! starts the cluster and runs them with `--ignored` (with `TEST_REDIS_URL`,
//! `TEST_REDIS_CLUSTER=true` and `TEST_REDIS_TLS_CA_FILE` pointing at it).

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use flash_tests::{Options, TestEnv, primaries};
use futures::{StreamExt, future::join_all};
use reqwest::{Method, StatusCode};
use shared::{
    config::{CaFile, RedisConfig, SaleConfig},
    domain::{Activity, TimeoutMessage},
    redis::RedisStore,
};

fn cluster_env() -> (String, CaFile) {
    assert!(flash_tests::redis_cluster(), "set TEST_REDIS_CLUSTER=true and TEST_REDIS_URL to a node of the cluster");
    let ca = std::env::var("TEST_REDIS_TLS_CA_FILE").expect("TEST_REDIS_TLS_CA_FILE");
    (flash_tests::redis_url(), CaFile::read(&ca).expect("the cluster's CA"))
}

fn cluster_dir() -> std::path::PathBuf {
    std::env::var("REDIS_CLUSTER_DIR").map(Into::into).unwrap_or_else(|_| {
        std::path::PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/flash-sale/redis-cluster")
    })
}

/// The port of the primary that owns `key`'s slot now.
async fn owner(c: &mut impl redis::aio::ConnectionLike, key: &str) -> u16 {
    let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(c).await.expect("KEYSLOT");
    let slots: Vec<(u16, u16, (String, u16))> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async::<Vec<redis::Value>>(c)
        .await
        .expect("CLUSTER SLOTS")
        .into_iter()
        .filter_map(|r| {
            let redis::Value::Array(items) = r else { return None };
            let start: u16 = redis::from_redis_value_ref(items.first()?).ok()?;
            let end: u16 = redis::from_redis_value_ref(items.get(1)?).ok()?;
            let redis::Value::Array(p) = items.get(2)? else { return None };
            Some((
                start,
                end,
                (redis::from_redis_value_ref(p.first()?).ok()?, redis::from_redis_value_ref(p.get(1)?).ok()?),
            ))
        })
        .collect();
    slots.iter().find(|(s, e, _)| (*s..=*e).contains(&slot)).map(|(_, _, (_, port))| *port).expect("slot covered")
}

/// A plain TLS connection to one node (for INFO, CONFIG RESETSTAT).
async fn node(port: u16, ca: &CaFile) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}"),
        redis::TlsCertificates { client_tls: None, root_cert: Some(ca.pem.clone()) },
    )
    .expect("node client");
    client.get_multiplexed_async_connection().await.expect("node connection")
}

/// A counter of `INFO commandstats` on one node (`calls` or `failed_calls` of a command).
async fn commandstat(port: u16, ca: &CaFile, command: &str, field: &str) -> u64 {
    let info: String =
        redis::cmd("INFO").arg("commandstats").query_async(&mut node(port, ca).await).await.expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:")))
        .and_then(|rest| rest.split(',').find_map(|kv| kv.strip_prefix(&format!("{field}="))))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open sales until one is owned by each primary (their hash tags land on different slots).
async fn sales_on_every_primary(env: &TestEnv, stock: i64) -> BTreeMap<u16, Activity> {
    let mut c = env.redis();
    let wanted = primaries(&mut c).await.len();
    assert_eq!(wanted, 3, "the local cluster has 3 primaries");
    let mut by_owner = BTreeMap::new();
    for _ in 0..40 {
        let a = env.open_sale(stock).await;
        let port = owner(&mut c, &env.sale.redis.keys().sale(a.product_id)).await;
        by_owner.entry(port).or_insert(a);
        if by_owner.len() == wanted {
            return by_owner;
        }
    }
    panic!("40 products did not cover the 3 primaries: {:?}", by_owner.keys());
}

#[tokio::test]
#[ignore = "needs the local TLS cluster: scripts/test.sh runs it"]
async fn three_products_on_three_primaries_sell_concurrently_and_exactly() {
    let (_, ca) = cluster_env();
    let env = TestEnv::start().await;
    let sales = sales_on_every_primary(&env, 100).await;
    let mut before = BTreeMap::new();
    for port in sales.keys() {
        before.insert(*port, commandstat(*port, &ca, "evalsha", "calls").await);
    }
    // 600 buyers per product, all three races at once.
    let env = &env;
    let races = sales.values().map(|a| async move {
        let users: Vec<String> = (0..600).map(|i| format!("p{}-buyer-{i}", a.product_id)).collect();
        let replies = join_all(users.iter().map(|u| env.buy(u, a.product_id))).await;
        (a, users, replies)
    });
    for (a, users, replies) in join_all(races).await {
        let mut winners = HashSet::new();
        for (user, r) in users.iter().zip(&replies) {
            match r.status {
                StatusCode::ACCEPTED => assert!(winners.insert(user.clone()), "{user} twice"),
                _ => r.assert_error(409, "sold_out"),
            }
        }
        assert_eq!(winners.len(), 100, "product {}", a.product_id);
        assert_eq!(env.redis_stock(a.product_id).await, Some(0));
        assert_eq!(env.outbox_len(a.product_id).await, 100);
    }
    for port in sales.keys() {
        let ran = commandstat(*port, &ca, "evalsha", "calls").await - before[port];
        assert!(ran >= 100, "primary {port} ran {ran} scripts for its product's 600 buyers");
    }
    env.consume_orders().await;
    for a in sales.values() {
        let r = env.admin(Method::GET, &format!("/admin/activities/{}/reconcile", a.id), None).await;
        assert_eq!(r.json["balanced"], true, "{}", r.text);
        assert_eq!(r.json["orders_pending_payment"], 100, "{}", r.text);
    }
}

fn other_ca() -> String {
    let dir = std::env::temp_dir().join(format!("flash-other-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("other-ca.crt");
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=another CA"])
        .arg("-keyout")
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&ca)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    ca.to_string_lossy().into_owned()
}

#[tokio::test]
#[ignore = "needs the local TLS cluster: scripts/test.sh runs it"]
async fn a_server_certificate_from_another_ca_or_an_unreachable_cluster_is_a_start_up_error_naming_the_variable() {
    let (url, ca) = cluster_env();
    let other = other_ca();
    let other = CaFile::read(&other).expect("a PEM file");
    for cluster in [true, false] {
        let cfg = RedisConfig { url: url.clone(), cluster, tls_ca: Some(other.clone()), ..RedisConfig::local("x") };
        let err = RedisStore::connect(&cfg).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("REDIS_TLS_CA_FILE: ") && err.contains("certificate"), "cluster={cluster}: {err}");
        // The system roots do not know the local CA either.
        let cfg = RedisConfig { tls_ca: None, ..cfg };
        let err = RedisStore::connect(&cfg).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("REDIS_URL: ") && err.contains("certificate"), "cluster={cluster}: {err}");
    }
    // The right CA connects; a cluster nobody serves is refused at start-up, by name.
    let good = RedisConfig { url: url.clone(), cluster: true, tls_ca: Some(ca.clone()), ..RedisConfig::local("x") };
    assert!(RedisStore::connect(&good).await.is_ok());
    let nowhere = RedisConfig { url: "rediss://127.0.0.1:1".into(), ..good };
    let err = RedisStore::connect(&nowhere).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.starts_with("REDIS_URL: could not connect to the cluster"), "{err}");
}

#[tokio::test]
#[ignore = "needs the local TLS cluster: scripts/test.sh runs it"]
async fn script_flush_on_every_node_is_answered_by_eval_on_every_script_path() {
    let (_, ca) = cluster_env();
    let sale = SaleConfig {
        outbox_retry_after: Duration::ZERO,
        payment_window: Duration::from_secs(1),
        ..SaleConfig::default()
    };
    let env = TestEnv::start_with(Options { sale, ..Options::default() }).await;
    let a = env.open_sale(10).await;
    let port = owner(&mut env.redis(), &env.sale.redis.keys().sale(a.product_id)).await;
    let flush_all = || async {
        for p in 7000..=7005 {
            let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut node(p, &ca).await).await.expect("FLUSH");
        }
    };
    let evals = commandstat(port, &ca, "eval", "calls").await;
    // buy.lua (then its replica confirmation), claim.lua/sent.lua (outbox-retry), ack.lua (consumer),
    // restore.lua (payment timeout), each after the cache was emptied.
    flush_all().await;
    let r = env.buy("flushed-1", a.product_id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let receipt = r.json["receipt"].as_str().expect("receipt").to_owned();
    flush_all().await;
    let report = env.app.outbox_retry.run().await.expect("outbox-retry");
    assert_eq!(report.resent, 1, "{report:?}");
    flush_all().await;
    env.consume_orders().await;
    assert_eq!(env.outbox_len(a.product_id).await, 0);
    flush_all().await;
    let msg = TimeoutMessage { receipt, activity_id: a.id, product_id: a.product_id };
    while let shared::orders::Expired::NotDue = env.app.payment_timeout.expire(&msg).await.expect("expire") {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(env.redis_stock(a.product_id).await, Some(10), "the unit came back");
    assert!(commandstat(port, &ca, "eval", "calls").await >= evals + 4, "every path fell back to EVAL");
}

#[tokio::test]
#[ignore = "needs the local TLS cluster: scripts/test.sh runs it"]
async fn a_purchase_the_replicas_do_not_confirm_gets_503_is_not_sent_and_is_delivered_later_with_its_receipt() {
    cluster_env();
    // Two replicas asked for, one exists: every purchase's wait falls short.
    let sale = SaleConfig { outbox_retry_after: Duration::ZERO, ..SaleConfig::default() };
    let env = TestEnv::start_with(Options { sale, redis_wait_replicas: Some(2), ..Options::default() }).await;
    let a = env.open_sale(5).await;
    env.buy("unconfirmed", a.product_id).await.assert_error(503, "unavailable");
    assert_eq!(env.queue_depth().await, 0, "nothing sent for an unconfirmed purchase");
    assert_eq!(env.outbox_len(a.product_id).await, 1, "it is in the primary's outbox");
    assert_eq!(env.redis_stock(a.product_id).await, Some(4));
    // The buyer's retry learns the receipt; outbox-retry delivers the purchase.
    let again = env.buy("unconfirmed", a.product_id).await;
    again.assert_error(409, "already_bought");
    let receipt = again.json["error"]["receipt"].as_str().expect("receipt in the 409").to_owned();
    let report = env.app.outbox_retry.run().await.expect("outbox-retry");
    assert_eq!(report.resent, 1, "{report:?}");
    env.consume_orders().await;
    assert_eq!(env.order("unconfirmed", &receipt).await.json["status"], "pending_payment");
}

/// What the buyers of one failover round saw.
#[derive(Default)]
struct Seen {
    receipts: BTreeMap<String, String>,
    first_503: Option<Instant>,
    last_503: Option<Instant>,
    count_503: usize,
}

#[tokio::test]
#[ignore = "needs the local TLS cluster: scripts/test.sh runs it"]
async fn a_primary_killed_during_a_race_loses_no_acknowledged_purchase_five_times_in_a_row() {
    let (_, ca) = cluster_env();
    let sale = SaleConfig { outbox_retry_after: Duration::ZERO, ..SaleConfig::default() };
    let env = Arc::new(TestEnv::start_with(Options { sale, ..Options::default() }).await);
    // The figures of each round, also kept where scripts/test.sh shows them.
    let report_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cluster-failover.txt");
    let mut report = String::new();
    for round in 1..=5 {
        let a = env.open_sale(300).await;
        let key = env.sale.redis.keys().sale(a.product_id);
        let victim = owner(&mut env.redis(), &key).await;
        let pid: i32 = std::fs::read_to_string(cluster_dir().join(victim.to_string()).join("redis.pid"))
            .expect("the victim's pid file")
            .trim()
            .parse()
            .expect("pid");

        let won = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let killer = {
            let (won, key, ca) = (won.clone(), key.clone(), ca.clone());
            tokio::spawn(async move {
                while won.load(Ordering::SeqCst) < 100 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
                assert!(status.success());
                let killed = Instant::now();
                // Its replica is promoted; then the node comes back as a replica (as the
                // service would replace it) and the new primary has its replica again.
                let survivor = if victim == 7000 { 7001 } else { 7000 };
                let promoted = loop {
                    if let Ok(port) = tokio::time::timeout(Duration::from_secs(2), async {
                        owner(&mut node(survivor, &ca).await, &key).await
                    })
                    .await
                        && port != victim
                    {
                        break port;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
                let took = killed.elapsed();
                let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/redis-cluster.sh");
                let out = std::process::Command::new("bash").arg(script).arg("start").output().expect("restart");
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                flash_tests::eventually(Duration::from_secs(30), "the new primary's replica online", || async {
                    let info: String = redis::cmd("INFO")
                        .arg("replication")
                        .query_async(&mut node(promoted, &ca).await)
                        .await
                        .unwrap_or_default();
                    info.contains("connected_slaves:1") && info.contains("state=online")
                })
                .await;
                (promoted, took, killed.elapsed())
            })
        };

        let started = Instant::now();
        let buyers = (0..2000).map(|i| {
            let (env, won, seen) = (env.clone(), won.clone(), seen.clone());
            async move {
                let user = format!("r{round}-buyer-{i}");
                loop {
                    let r = env.buy(&user, a.product_id).await;
                    match (r.status.as_u16(), r.error_code()) {
                        (202, _) => {
                            won.fetch_add(1, Ordering::SeqCst);
                            let receipt = r.json["receipt"].as_str().expect("receipt").to_owned();
                            seen.lock().expect("lock").receipts.insert(receipt, user);
                            return;
                        }
                        (409, "already_bought") => {
                            let receipt = r.json["error"]["receipt"].as_str().expect("receipt").to_owned();
                            seen.lock().expect("lock").receipts.insert(receipt, user);
                            return;
                        }
                        (409, "sold_out") => return,
                        (503, _) => {
                            {
                                let mut s = seen.lock().expect("lock");
                                s.count_503 += 1;
                                s.first_503.get_or_insert(Instant::now());
                                s.last_503 = Some(Instant::now());
                            }
                            assert!(started.elapsed() < Duration::from_secs(120), "{user} still gets 503");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        _ => panic!("{user}: unexpected answer {} {}", r.status, r.text),
                    }
                }
            }
        });
        // At most 200 buyers in flight, like a gateway in front of a bounded fleet.
        futures::stream::iter(buyers).buffer_unordered(200).collect::<Vec<()>>().await;
        let (promoted, promotion, healed) = killer.await.expect("killer");

        // Drain: outbox-retry delivers what the buyers' 202 did not send, the consumer writes.
        for _ in 0..20 {
            env.app.outbox_retry.run().await.expect("outbox-retry");
            env.consume_orders().await;
            if env.outbox_len(a.product_id).await == 0 {
                break;
            }
        }
        let s = std::mem::take(&mut *seen.lock().expect("lock"));
        let orders: Vec<(String, String)> =
            sqlx::query_as("SELECT receipt, user_id FROM orders WHERE activity_id = ? AND status = 'pending_payment'")
                .bind(a.id)
                .fetch_all(env.sale.db.pool())
                .await
                .expect("orders");
        let ordered: BTreeMap<String, String> = orders.into_iter().collect();
        let users: HashSet<&String> = ordered.values().collect();
        assert!(s.receipts.len() <= 300, "round {round}: {} units handed out", s.receipts.len());
        assert_eq!(users.len(), ordered.len(), "round {round}: a user twice");
        assert_eq!(ordered, s.receipts, "round {round}: the buyers' receipts and the orders differ");
        let r = env.admin(Method::GET, &format!("/admin/activities/{}/reconcile", a.id), None).await;
        assert_eq!(r.json["balanced"], true, "round {round}: {}", r.text);
        let evals = commandstat(promoted, &ca, "eval", "calls").await;
        assert!(evals > 0, "round {round}: the promoted primary never fell back to EVAL (NOSCRIPT)");
        let burst = s.first_503.zip(s.last_503).map(|(f, l)| l - f).unwrap_or_default();
        let line = format!(
            "round {round}: killed {victim} after 100 wins; {promoted} promoted after {:.1} s, replica back after {:.1} s; \
             {} units sold, {} answers 503 over {:.1} s; {evals} EVAL fallbacks on the new primary",
            promotion.as_secs_f64(),
            healed.as_secs_f64(),
            s.receipts.len(),
            s.count_503,
            burst.as_secs_f64()
        );
        println!("{line}");
        report.push_str(&line);
        report.push('\n');
        std::fs::write(&report_path, &report).expect("failover report");
    }
}
