//! A Kafka broker for tests: [`TestBroker`] runs Apache Kafka itself (KRaft, one JVM as
//! broker and controller) on a free loopback port, with its log directory in a temporary
//! directory; [`Proxy`] sits in front of a broker so a test can make it unreachable and
//! reachable again without losing its data.
//!
//! The broker's jars come from Maven Central through `mvn` (a generated pom and
//! `dependency:copy-dependencies`) into `~/.cache/rill/kafka-<version>/` the first time
//! they are missing (about 45 MB, a few seconds), under a lock (a directory) so that test binaries
//! running in parallel fetch them once. `RILL_KAFKA_CACHE` names another cache directory,
//! `RILL_JAVA` another `java`. A test needs `java` (17 or later) and `mvn` on the `PATH`;
//! without them [`TestBroker::start`] panics and says so: a test never skips silently.
//!
//! The JVM is started by a small `sh` wrapper that kills it when its standard input
//! closes, which happens when the test process exits or dies (even by SIGKILL): a test
//! leaves no broker behind. [`TestBroker::shared`] gives every test of a binary one broker
//! (tests then use topic and group names of their own).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

/// The Apache Kafka release the tests run.
pub const KAFKA_VERSION: &str = "4.1.1";

/// What the tests need installed, for the panic messages.
pub const INSTALL_HINT: &str = "the Kafka tests run Apache Kafka: they need `java` (17 or \
later) and `mvn` on the PATH, and Maven Central reachable the first time (the jars are \
cached in ~/.cache/rill/kafka-<version>, or in RILL_KAFKA_CACHE)";

/// How long a broker may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The broker's files in the cache: its jars, and a class-data archive of the JVM
/// (made once by running a broker, it halves the start).
#[derive(Debug, Clone)]
pub struct KafkaFiles {
    /// The directory of the jars (the class path is `<libs>/*`).
    pub libs: PathBuf,
    /// The JVM's class-data archive (`-XX:SharedArchiveFile`).
    pub class_archive: PathBuf,
}

/// The broker's files, fetched through Maven (and the class archive made) if missing.
///
/// # Panics
///
/// If `mvn` fails (the message has its output and [`INSTALL_HINT`]).
pub fn kafka_files() -> KafkaFiles {
    let root = std::env::var_os("RILL_KAFKA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
            home.join(".cache/rill")
        })
        .join(format!("kafka-{KAFKA_VERSION}"));
    let files = KafkaFiles {
        libs: root.join("libs"),
        class_archive: root.join("broker.jsa"),
    };
    let complete = root.join("complete");
    if complete.is_file() {
        return files;
    }
    fs::create_dir_all(&root).unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    let lock = DirLock::acquire(&root.join("lock.d"));
    if !complete.is_file() {
        fetch_jars(&root, &files.libs);
        // Run a broker once, stopped gracefully, to dump the classes it loaded.
        let _ = fs::remove_file(&files.class_archive);
        let partial = root.join("broker.jsa.partial");
        let _ = fs::remove_file(&partial);
        let port = free_port();
        let broker = TestBroker::launch(port, port, &files.libs, ClassArchive::Write(&partial));
        drop(broker);
        if partial.is_file() {
            let _ = fs::rename(&partial, &files.class_archive);
        }
        File::create(&complete)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", complete.display()));
    }
    drop(lock);
    files
}

/// How a broker's directory in the temporary directory is named: the prefix, then the
/// launching process's id and a count.
const BROKER_DIR_PREFIX: &str = "rill-kafka-broker-";

/// Removes the brokers' directories (their logs: gigabytes after a benchmark) that
/// processes no longer running launched in `tmp`. The wrapper removes its directory when
/// the launching process ends, however it ends; but when the wrapper itself is killed
/// (a kill of the whole process group, as a timeout or `pkill -f` does) nothing does:
/// such leftovers, 35 GB of them, once filled this machine's disk and stopped the broker
/// a benchmark ran against.
fn remove_dead_brokers_dirs(tmp: &Path) {
    remove_dirs_of_ended_processes(tmp, |name| {
        let rest = name.strip_prefix(BROKER_DIR_PREFIX)?;
        rest.split('-').next()?.parse().ok()
    });
}

/// Removes every directory in `tmp` whose name `pid_of` gives the id of a process that
/// no longer runs (not this one): what tests left behind there (`/proc` tells: the
/// brokers and tests run on Linux only; a reused id keeps a dead process's directory
/// until that process is gone too). Names `pid_of` gives no id are left alone.
pub fn remove_dirs_of_ended_processes(tmp: &Path, pid_of: impl Fn(&str) -> Option<u32>) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(&pid_of) else {
            continue;
        };
        let runs = Path::new("/proc").join(pid.to_string()).exists();
        if pid != std::process::id() && !runs {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A lock between processes: a directory that one process creates at a time (atomic),
/// removed on drop; one older than 10 minutes is taken as left by a dead process.
struct DirLock(PathBuf);

impl DirLock {
    fn acquire(path: &Path) -> DirLock {
        loop {
            match fs::create_dir(path) {
                Ok(()) => return DirLock(path.to_path_buf()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(600));
                    if stale {
                        let _ = fs::remove_dir(path);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot create the lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// What the broker's JVM does with the class-data archive.
#[derive(Debug, Clone, Copy)]
enum ClassArchive<'a> {
    /// Uses it (if it is there and fits this JVM; else the JVM goes on without).
    Read(&'a Path),
    /// Writes it when the broker stops (which is then graceful, SIGTERM).
    Write(&'a Path),
}

fn fetch_jars(root: &Path, libs: &Path) {
    let pom = root.join("pom.xml");
    fs::write(
        &pom,
        format!(
            r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>rill</groupId>
  <artifactId>rill-test-broker</artifactId>
  <version>1</version>
  <dependencies>
    <!-- kafka_2.13 holds kafka.Kafka (the server) and kafka.tools.StorageTool. -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"#
        ),
    )
    .unwrap_or_else(|e| panic!("cannot write {}: {e}", pom.display()));
    let _ = fs::remove_dir_all(libs);
    let out = Command::new("mvn")
        .args(["-q", "-B", "-f"])
        .arg(&pom)
        .arg("dependency:copy-dependencies")
        .arg(format!("-DoutputDirectory={}", libs.display()))
        .arg("-DincludeScope=runtime")
        .output()
        .unwrap_or_else(|e| panic!("cannot run mvn: {e} ({INSTALL_HINT})"));
    if !out.status.success() {
        panic!(
            "mvn could not fetch Apache Kafka {KAFKA_VERSION} ({}): {}{} ({INSTALL_HINT})",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every record of `topic` as a `read_committed` reader sees it (`admin::read_topic`), as
/// UTF-8 text, sorted: what a test compares with the rows a job must write. Panics on an
/// error or a record that is not UTF-8.
pub fn read_text_sorted(brokers: &str, topic: &str) -> Vec<String> {
    let mut v: Vec<String> = crate::admin::read_topic(brokers, topic)
        .unwrap_or_else(|e| panic!("reading {topic}: {e}"))
        .into_iter()
        .map(|v| String::from_utf8(v).expect("a UTF-8 record"))
        .collect();
    v.sort();
    v
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

/// True once the broker answers a metadata request and lists itself.
fn answers(brokers: &str) -> bool {
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("log_level", "0")
        .create::<BaseConsumer>()
    else {
        return false;
    };
    consumer
        .fetch_metadata(None, Duration::from_millis(500))
        .is_ok_and(|m| !m.brokers().is_empty())
}

/// The settings of a one-node cluster: everything with replication factor 1, the
/// transaction log writable with one replica, no delay before a group's first rebalance,
/// and no time-based retention (NEXMark events carry their 2015 event times as Kafka
/// timestamps: a 7-day retention would delete them within minutes).
fn server_properties(dir: &Path, port: u16, controller: u16, advertised: u16) -> String {
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{advertised}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={}
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
log.retention.ms=-1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
num.network.threads=2
broker.heartbeat.interval.ms=100
controller.quorum.election.timeout.ms=200
controller.quorum.fetch.timeout.ms=400
num.io.threads=4
log.flush.interval.messages=9223372036854775807
",
        dir.join("data").display()
    )
}

/// An Apache Kafka broker (and controller) on loopback, its log directory in a temporary
/// directory; killed, and its directory removed, when dropped.
#[derive(Debug)]
pub struct TestBroker {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    advertised: u16,
    dir: PathBuf,
    started_in: Duration,
}

impl TestBroker {
    /// One broker for every test of this process, started by the first call (and killed
    /// when the process exits). Tests that share it use topic and group names of their
    /// own.
    ///
    /// # Panics
    ///
    /// As [`TestBroker::start`].
    pub fn shared() -> &'static TestBroker {
        static SHARED: OnceLock<TestBroker> = OnceLock::new();
        SHARED.get_or_init(TestBroker::start)
    }

    /// Starts a broker of its own on a free port.
    ///
    /// # Panics
    ///
    /// If `java` or `mvn` is missing ([`INSTALL_HINT`]), or the broker does not answer
    /// within a minute (the message has the end of its log).
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
        let files = kafka_files();
        TestBroker::launch(
            port,
            advertised,
            &files.libs,
            ClassArchive::Read(&files.class_archive),
        )
    }

    fn launch(port: u16, advertised: u16, libs: &Path, archive: ClassArchive<'_>) -> TestBroker {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let started = Instant::now();
        remove_dead_brokers_dirs(&std::env::temp_dir());
        let dir = std::env::temp_dir().join(format!(
            "{BROKER_DIR_PREFIX}{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let controller = free_port();
        let properties = dir.join("server.properties");
        fs::write(
            &properties,
            server_properties(&dir, port, controller, advertised),
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", properties.display()));
        let log_path = dir.join("broker.log");
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let java = std::env::var_os("RILL_JAVA").unwrap_or_else(|| "java".into());
        let (read, write, stop) = match archive {
            ClassArchive::Read(a) => (a.display().to_string(), String::new(), "KILL"),
            ClassArchive::Write(a) => (String::new(), a.display().to_string(), "TERM"),
        };
        // Format the log directory, then run the broker in the background; when the
        // standard input closes (this process ended, however), stop it (SIGKILL, or
        // SIGTERM when it writes the class archive) and remove its directory (a shared
        // broker is never dropped).
        let script = r#"java="$1"; cp="$2"; props="$3"; dir="$4"; read="$5"; write="$6"; stop="$7"
share=""
[ -n "$read" ] && [ -f "$read" ] && share="-XX:SharedArchiveFile=$read"
"$java" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 $share -Xshare:auto -cp "$cp" \
    kafka.tools.StorageTool format --ignore-formatted -t cmlsbC10ZXN0LWJyb2tlcg -c "$props" || exit 3
[ -n "$write" ] && share="-XX:ArchiveClassesAtExit=$write"
"$java" -Xms128m -Xmx512m -XX:+UseSerialGC $share -Xshare:auto -cp "$cp" kafka.Kafka "$props" </dev/null &
pid=$!
# (An asynchronous command's standard input is /dev/null unless redirected: fd 3.)
exec 3<&0
(cat <&3 >/dev/null; kill -$stop $pid 2>/dev/null
    while kill -0 $pid 2>/dev/null; do sleep 0.05; done; rm -rf "$dir") &
wait $pid
"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&java)
            .arg(format!("{}/*", libs.display()))
            .arg(&properties)
            .arg(&dir)
            .args([read.as_str(), write.as_str(), stop])
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("the broker log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sh for the broker: {e} ({INSTALL_HINT})"));
        let mut broker = TestBroker {
            stdin: None,
            child,
            port,
            advertised,
            dir,
            started_in: Duration::ZERO,
        };
        broker.stdin = broker.child.stdin.take();
        let deadline = Instant::now() + START_TIMEOUT;
        let direct = format!("127.0.0.1:{port}");
        loop {
            if let Some(status) = broker.child.try_wait().ok().flatten() {
                panic!(
                    "the Kafka broker exited ({status}) before it answered ({INSTALL_HINT}); \
                     its log:\n{}",
                    broker.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "the Kafka broker did not answer on port {port} within {START_TIMEOUT:?}; \
                     its log:\n{}",
                    broker.log_tail()
                );
            }
            // Ask the broker's own port (a proxy may not forward yet): the first metadata
            // request goes to the bootstrap address. (A listener may accept connections
            // before the broker is ready, so a connection alone proves nothing.)
            if wait_listening(port, Duration::from_millis(50)) && answers(&direct) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        broker.started_in = started.elapsed();
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

    /// How long the start took, from the call until the broker answered (jars cached).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // Closing its standard input makes the wrapper kill the JVM.
        drop(self.stdin.take());
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_of_brokers_whose_process_ended_are_removed() {
        let tmp = std::env::temp_dir().join(format!("rill-broker-dirs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        // A process that has ended, one that runs, this one.
        let mut ended = Command::new("true").spawn().unwrap();
        ended.wait().unwrap();
        let mut running = Command::new("sleep").arg("30").spawn().unwrap();
        let names = [
            format!("{BROKER_DIR_PREFIX}{}-0", ended.id()),
            format!("{BROKER_DIR_PREFIX}{}-3", running.id()),
            format!("{BROKER_DIR_PREFIX}{}-1", std::process::id()),
            "rill-kafka-sink-1".to_string(),
            format!("{BROKER_DIR_PREFIX}x-0"),
        ];
        for name in &names {
            fs::create_dir_all(tmp.join(name).join("logs")).unwrap();
        }
        remove_dead_brokers_dirs(&tmp);
        let left: Vec<bool> = names.iter().map(|n| tmp.join(n).exists()).collect();
        let _ = running.kill();
        let _ = running.wait();
        let _ = fs::remove_dir_all(&tmp);
        assert_eq!(left, [false, true, true, true, true], "{names:?}");
    }
}
