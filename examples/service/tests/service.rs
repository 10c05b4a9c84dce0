//! The example service over real TCP connections: each client's bucket limits it alone,
//! every line is answered (also after the client closed its side), and stopping the
//! service answers what was sent.

use rill_example_service::{Limits, Service};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sends `lines`, closes the sending side, reads every answer (sorted by line number).
async fn client(addr: std::net::SocketAddr, lines: &[&str]) -> Vec<String> {
    let socket = TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = socket.into_split();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    write.write_all(text.as_bytes()).await.unwrap();
    write.shutdown().await.unwrap();
    let mut answers = Vec::new();
    let mut reader = BufReader::new(read).lines();
    while let Some(line) = reader.next_line().await.unwrap() {
        answers.push(line);
    }
    answers.sort_by_key(|a| a.split(' ').next().unwrap().parse::<u64>().unwrap());
    answers
}

#[test]
fn each_client_is_limited_by_its_own_bucket() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A bucket of 3, refilled at 1 a minute: no refill during the test.
    let limits = Limits {
        burst: 3,
        per_minute: 1,
    };
    let service = Service::start(limits, 2).unwrap();
    let report = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(service.serve(listener, async {
            let _ = stop_rx.await;
        }));
        let alice = client(addr, &["alice"; 5]).await;
        assert_eq!(
            alice,
            vec![
                "1 alice ok 2",
                "2 alice ok 1",
                "3 alice ok 0",
                "4 alice limited",
                "5 alice limited"
            ]
        );
        // Another connection, two clients: alice is still out of tokens, bob has his own.
        let both = client(addr, &["bob", "alice", "bob"]).await;
        assert_eq!(both, vec!["1 bob ok 2", "2 alice limited", "3 bob ok 1"]);
        stop_tx.send(()).unwrap();
        served.await.unwrap().unwrap()
    });
    assert_eq!(report.operator("token bucket").unwrap().total(), 8);
    assert_eq!(report.end, rill_runtime::JobEnd::Finished);
}
