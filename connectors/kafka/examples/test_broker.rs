//! Runs the test broker (Apache Kafka 4.1.1, the tests' settings) on a port until this
//! process ends, for benchmarks by hand:
//! `cargo run -p rill-kafka --example test_broker -- 29192`.

use rill_kafka::testing::TestBroker;

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: test_broker PORT");
            std::process::exit(2);
        }
    };
    let broker = TestBroker::start_advertising(port, port);
    println!("{}", broker.brokers());
    // The broker dies with this process (its wrapper watches our end of its stdin).
    loop {
        std::thread::park();
    }
}
