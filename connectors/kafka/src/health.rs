//! Whether the brokers can be reached: librdkafka reconnects by itself, so a source or sink
//! only needs to know for how long they have been unreachable, to give up after a bounded
//! wait with a clear error instead of waiting forever.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How often librdkafka reports statistics, which tell that a broker is up again.
pub(crate) const STATS_INTERVAL_MS: &str = "500";

/// Since when the brokers have been unreachable, and librdkafka's last word about it.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Whether `down` holds an outage: the record path checks only this.
    is_down: AtomicBool,
    down: Mutex<Option<(Instant, String)>>,
}

impl Health {
    /// How long the brokers have been unreachable (`None`: reachable), and why.
    pub(crate) fn down_for(&self) -> Option<(Duration, String)> {
        if !self.is_down.load(Ordering::Acquire) {
            return None;
        }
        let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        down.as_ref()
            .map(|(since, why)| (since.elapsed(), why.clone()))
    }

    /// Records a client error; transport errors start (or continue) an outage.
    pub(crate) fn error(&self, error: &KafkaError, reason: &str) {
        let transport = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure)
        );
        if transport {
            let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
            match down.as_mut() {
                Some((_, why)) => *why = format!("{error}: {reason}"),
                None => *down = Some((Instant::now(), format!("{error}: {reason}"))),
            }
            self.is_down.store(true, Ordering::Release);
        }
    }

    /// A broker answered: the outage, if any, is over.
    pub(crate) fn up(&self) {
        if !self.is_down.load(Ordering::Acquire) {
            return;
        }
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        *down = None;
        self.is_down.store(false, Ordering::Release);
    }
}

/// The client context of the connector's producers and admin clients: tracks [`Health`].
#[derive(Debug, Default, Clone)]
pub(crate) struct HealthContext {
    pub(crate) health: std::sync::Arc<Health>,
}

impl ClientContext for HealthContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.health.error(&error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        if broker_up(statistics) {
            self.health.up();
        }
    }
}

impl rdkafka::consumer::ConsumerContext for HealthContext {}

/// Whether librdkafka's statistics (JSON) show a broker connection that is up.
pub(crate) fn broker_up(statistics: &[u8]) -> bool {
    const UP: &[u8] = b"\"state\":\"UP\"";
    statistics.windows(UP.len()).any(|w| w == UP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_starts_with_a_transport_error_and_ends_when_a_broker_is_up() {
        let h = Health::default();
        assert!(h.down_for().is_none());
        h.error(
            &KafkaError::MessageConsumption(RDKafkaErrorCode::InvalidMessage),
            "not a transport error",
        );
        assert!(h.down_for().is_none());
        h.error(
            &KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let (_, why) = h.down_for().expect("down");
        assert!(why.contains("1/1 brokers are down"), "{why}");
        assert!(!broker_up(br#"{"brokers":{"b":{"state":"DOWN"}}}"#));
        assert!(broker_up(br#"{"brokers":{"b":{"state":"UP"}}}"#));
        h.up();
        assert!(h.down_for().is_none());
    }
}
