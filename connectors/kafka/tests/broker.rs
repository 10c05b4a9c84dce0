//! The test broker itself: Apache Kafka answers on its port, is gone once dropped, and
//! does not outlive a test process that is SIGKILLed.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rill_kafka::admin::{ensure_topic, read_topic, TopicWriter};
use rill_kafka::testing::TestBroker;

fn gone_within(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_broker_answers_and_is_gone_once_dropped() {
    let broker = TestBroker::start();
    eprintln!(
        "the broker answered {:?} after the start",
        broker.started_in()
    );
    let b = broker.brokers();
    assert_eq!(ensure_topic(&b, "hello", 2).unwrap(), 2);
    let w = TopicWriter::new(&b, "hello").unwrap();
    for i in 0..10 {
        w.send(i % 2, None, format!("{i}").as_bytes()).unwrap();
    }
    w.flush().unwrap();
    assert_eq!(read_topic(&b, "hello").unwrap().len(), 10);
    let port = broker.port();
    drop(broker);
    assert!(
        gone_within(port, Duration::from_secs(5)),
        "port {port} still answers"
    );
}

/// Run by the test below in a child process: starts a broker, prints its port, waits.
#[test]
#[ignore = "a child process of a_broker_does_not_outlive_a_killed_test_process"]
fn child_holding_a_broker() {
    let broker = TestBroker::shared();
    println!("port {}", broker.port());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_broker_does_not_outlive_a_killed_test_process() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_holding_a_broker",
            "--nocapture",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let port: u16 = stdout
        .lines()
        .map_while(|l| l.ok())
        .find_map(|l| l.strip_prefix("port ").map(|p| p.trim().parse().unwrap()))
        .expect("the child printed its broker's port");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert!(
        gone_within(port, Duration::from_secs(10)),
        "the broker on port {port} outlived its test process"
    );
}
